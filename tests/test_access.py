"""Who can reach the app: --share needs a login, every route needs the login, and Gradio serves only outputs.

The app is started for real on loopback with --listen style settings and a login, then probed with plain HTTP
requests that carry no session cookie, as a stranger who found the link would send them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from browser_support import running_app
from ldm_ui.config import PROJECT_ROOT, AppConfig, ConfigError, config_from_args

USER, PASSWORD = "alice", "correct horse battery staple"

# Routes Gradio serves without a login, each checked below to hand out nothing of the user's:
PUBLIC_ROUTES = {
    ("GET", "/"), ("HEAD", "/"),  # the login page (no app config inside until signed in)
    ("POST", "/login"), ("POST", "/login/"), ("GET", "/logout"),
    ("GET", "/gradio_api/user"), ("GET", "/gradio_api/user/"),  # who am I: null when signed out
    ("GET", "/gradio_api/token"), ("GET", "/gradio_api/token/"),  # echoes the caller's own cookie
    ("GET", "/gradio_api/app_id"), ("GET", "/gradio_api/app_id/"),  # a random number per launch
    # the app's own static files: the page's code, fonts, icons, theme
    ("GET", "/static/{path:path}"), ("GET", "/assets/{path:path}"), ("GET", "/svelte/{path:path}"),
    ("GET", "/favicon.ico"), ("GET", "/theme.css"), ("GET", "/gradio_api/theme.css"), ("GET", "/robots.txt"),
    ("GET", "/manifest.json"), ("GET", "/pwa_icon"), ("GET", "/pwa_icon/{size}"),
    ("GET", "/gradio_api/custom_component/{id}/{environment}/{type}/{file_name}"),
    ("GET", "/gradio_api/startup-events"),  # runs the app's startup events once; ours has none that matter
    ("GET", "/gradio_api/heartbeat/{session_hash}"),  # keeps a session alive; sees nothing
    # act on one event of one session, named by random ids only its own page knows
    ("POST", "/gradio_api/cancel"), ("POST", "/gradio_api/reset"), ("POST", "/gradio_api/reset/"),
    ("POST", "/gradio_api/stream/{event_id}"), ("POST", "/gradio_api/stream/{event_id}/close"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist.m3u8"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/playlist-file"),
    ("GET", "/gradio_api/stream/{session_hash}/{run}/{component_id}/{segment_id}.{ext}"),
    ("GET", "/monitoring/{key}"),  # needs the secret monitoring key, and monitoring is off
    # Gradio's in-browser code editor, refused unless the app is started with Gradio's --vibe
    ("GET", "/gradio_api/vibe-code"), ("GET", "/gradio_api/vibe-code/"), ("POST", "/gradio_api/vibe-code"),
    ("POST", "/gradio_api/vibe-code/"), ("POST", "/gradio_api/vibe-edit"), ("POST", "/gradio_api/vibe-edit/"),
    ("POST", "/gradio_api/undo-vibe-edit"), ("POST", "/gradio_api/undo-vibe-edit/"),
    ("POST", "/gradio_api/vibe-starter-queries"), ("POST", "/gradio_api/vibe-starter-queries/"),
}


def all_routes(routes, prefix: str = ""):
    """(method, path) for every route the FastAPI app serves, including those of included routers."""
    for route in routes:
        if hasattr(route, "original_router"):
            yield from all_routes(route.original_router.routes, prefix + (route.include_context.prefix or ""))
        elif getattr(route, "methods", None):
            for method in route.methods:
                yield method, prefix + route.path
        elif hasattr(route, "routes"):  # a mounted sub-app
            yield from all_routes(route.routes, prefix + getattr(route, "path", ""))


def request_status(client: httpx.Client, method: str, url: str, **kwargs) -> tuple[int, bytes]:
    with client.stream(method, url, **kwargs) as response:
        if "text/event-stream" in response.headers.get("content-type", ""):
            return response.status_code, b""  # a stream that never ends by itself
        return response.status_code, response.read()


def txt2img(client, **values):
    """Call /txt2img by parameter name; inputs other tabs add later without a default are sent as None."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/txt2img"]
    for param in api["parameters"]:
        if not param["parameter_has_default"] and param["parameter_name"] not in values:
            values[param["parameter_name"]] = None
    return client.predict(api_name="/txt2img", **values)


@pytest.fixture
def listen_config(app_config) -> AppConfig:
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD)]
    return app_config


def test_share_without_auth_refuses_to_start():
    result = subprocess.run([sys.executable, "app.py", "--share"], cwd=PROJECT_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert "--share" in result.stderr and "--auth" in result.stderr and "--share-without-auth" in result.stderr


@pytest.mark.parametrize("flags,warning", [
    (["--share", "--share-without-auth"], "shared publicly without a login"),
    (["--listen"], "anyone on your network can use this app"),
])
def test_exposed_without_auth_warns_in_the_log(flags, warning, caplog, capsys, tmp_path):
    import app

    # a model that does not exist stops the launch right after the warnings, before any server starts
    argv = [*flags, "--model", "no-such-model", "--models-dir", str(tmp_path), "--outputs-dir", str(tmp_path)]
    with caplog.at_level("WARNING", logger="ldm_ui"):
        assert app.main(argv) == 2
    assert any(r.levelname == "WARNING" and warning in r.getMessage() for r in caplog.records), caplog.text
    assert "no-such-model" in capsys.readouterr().err


def test_auth_file_must_be_private(tmp_path):
    path = tmp_path / "logins.txt"
    path.write_text("# friends\nalice:pw1\nbob:pw2\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        config_from_args(["--auth-file", str(path)])
    path.chmod(0o600)
    config = config_from_args(["--share", "--auth-file", str(path)])
    assert config.auth == [("alice", "pw1"), ("bob", "pw2")] and config.auth_file == path
    with pytest.raises(ConfigError, match="user:password"):
        config_from_args(["--auth", "nopassword"])


def test_every_route_refuses_a_stranger(listen_config):
    with running_app(listen_config) as (url, _, demo), httpx.Client(timeout=10) as stranger:
        routes = set(all_routes(demo.app.routes))
        assert ("POST", "/gradio_api/queue/join") in routes and ("POST", "/gradio_api/upload") in routes
        served = {}
        for method, path in sorted(routes):
            concrete = re.sub(r"\{[^}]+\}", "x", path)
            served[(method, path)] = request_status(stranger, method, url + concrete, **(
                {"json": {}} if method == "POST" else {}))
        refused = {route for route, (status, _) in served.items() if status in (401, 403)}
        disabled = {("GET", "/gradio_api/runs"), ("GET", "/gradio_api/runs/")}  # run_history=False in app.py
        assert all(served[route][0] == 404 for route in disabled & routes)
        unexpected = {route: served[route][0] for route in routes - refused - PUBLIC_ROUTES - disabled}
        assert not unexpected, f"served without a login: {unexpected}"
        # the public ones give nothing away
        status, page = served[("GET", "/")]
        assert status == 200 and b"auth_required" in page and b"txt2img" not in page
        assert served[("GET", "/gradio_api/user")][1] == b"null"
        # the API a script would use, by every spelling, plus the file and upload routes
        for path in ("/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/queue/status",
                     f"/gradio_api/file={listen_config.outputs_dir}", "/gradio_api/file=/etc/passwd"):
            assert stranger.get(url + path).status_code == 401, path
        for path in ("/gradio_api/queue/join", "/gradio_api/call/txt2img", "/gradio_api/run/txt2img",
                     "/gradio_api/api/txt2img"):
            body = {"data": ["a red circle"], "fn_index": 0, "session_hash": "stranger"}
            assert stranger.post(url + path, json=body).status_code == 401, path
        upload = stranger.post(url + "/gradio_api/upload", files={"files": ("a.png", b"\x89PNG", "image/png")})
        assert upload.status_code == 401
        assert stranger.get(url + "/openapi.json").status_code == 404  # no route map for strangers
        assert stranger.get(url + "/docs").status_code == 404
        # a wrong password is refused too; the right one opens the same routes (so the 401s above mean "login")
        assert stranger.post(url + "/login", data={"username": USER, "password": "guess"}).status_code >= 400
        assert stranger.get(url + "/config").status_code == 401
        with httpx.Client(timeout=10) as friend:
            assert friend.post(url + "/login", data={"username": USER, "password": PASSWORD}).status_code == 200
            assert friend.get(url + "/config").status_code == 200
            assert friend.get(url + "/gradio_api/info").status_code == 200
    assert not list(listen_config.outputs_dir.rglob("*.png")), "a stranger's request produced an image"


def test_gradio_serves_outputs_but_not_models_home_or_config(listen_config, tmp_path):
    from gradio_client import Client

    listen_config.max_file_size_mb = 1
    secret = listen_config.cache_dir / "model-hashes.json"
    with running_app(listen_config) as (url, _, _):
        client = Client(url, auth=(USER, PASSWORD), verbose=False)
        result = txt2img(client, prompt="a red circle", steps=2, seed=7)
        saved = next(listen_config.outputs_dir.rglob("*.png"))
        assert secret.is_file()  # the model hash cache was written while loading the model
        with httpx.Client(timeout=10) as friend:
            friend.post(url + "/login", data={"username": USER, "password": PASSWORD})

            def fetch(path) -> int:
                return friend.get(f"{url}/gradio_api/file={path}").status_code

            gallery_copy = result[2][0]["image"]
            gallery_copy = gallery_copy["path"] if isinstance(gallery_copy, dict) else gallery_copy
            assert fetch(saved) == 200  # the outputs folder
            models_file = listen_config.models_dir / "diffusers" / "tiny-sd" / "model_index.json"
            for path in (models_file, secret, Path.home() / ".bashrc", PROJECT_ROOT / "app.py", "/etc/passwd",
                         f"{listen_config.outputs_dir}/../cache/model-hashes.json"):
                assert fetch(path) == 403, path
            big = friend.post(url + "/gradio_api/upload",
                              files={"files": ("big.png", b"\x00" * (1_500_000), "image/png")})
            assert big.status_code == 413 and "maximum allowed size" in big.text and "1048576" in big.text
            small = friend.post(url + "/gradio_api/upload", files={"files": ("s.png", b"\x00" * 1000, "image/png")})
            assert small.status_code == 200
    assert Path(gallery_copy).name.endswith(".png")


def test_blocked_paths_keep_an_outputs_folder_inside_home(tmp_path, monkeypatch):
    """Blocking the home folder would also block outputs inside it (Gradio's blocks win), so we block around it."""
    from gradio.utils import is_allowed_file

    from ldm_ui.access import allowed_paths, blocked_paths

    home = tmp_path / "home"
    for folder in (".ssh", ".cache/huggingface", "ldm-ui/models/diffusers", "ldm-ui/outputs/txt2img", "photos"):
        (home / folder).mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("key")
    (home / "photos" / "me.png").write_bytes(b"png")
    (home / "ldm-ui" / "outputs" / "txt2img" / "00000-1.png").write_bytes(b"png")
    (home / "ldm-ui" / "models" / "diffusers" / "m.safetensors").write_bytes(b"w")
    (home / "ldm-ui" / "logins.txt").write_text("alice:pw")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("HF_HOME", raising=False)
    config = AppConfig(models_dir=home / "ldm-ui" / "models", outputs_dir=home / "ldm-ui" / "outputs",
                       cache_dir=home / "ldm-ui" / ".cache", auth_file=home / "ldm-ui" / "logins.txt")
    blocked, allowed = blocked_paths(config), allowed_paths(config)
    assert str(home) not in blocked

    def served(path: Path) -> bool:
        return is_allowed_file(path, blocked, allowed, [])[0]

    assert served(home / "ldm-ui" / "outputs" / "txt2img" / "00000-1.png")
    for path in (home / ".ssh" / "id_ed25519", home / "photos" / "me.png", home / "ldm-ui" / "logins.txt",
                 home / "ldm-ui" / "models" / "diffusers" / "m.safetensors"):
        assert not served(path), path
        assert not is_allowed_file(path, blocked, [str(home)], [])[0], f"{path} not blocked"
    # with the outputs folder elsewhere the whole home folder is blocked
    elsewhere = AppConfig(models_dir=home / "ldm-ui" / "models", outputs_dir=tmp_path / "out",
                          cache_dir=home / "ldm-ui" / ".cache")
    assert str(home.resolve()) in blocked_paths(elsewhere, keep=[tmp_path / "out"])


def test_share_without_auth_shows_a_banner(app_config):
    app_config.share, app_config.share_without_auth = True, True
    launched = AppConfig(**{**app_config.__dict__, "share": False})  # no tunnel in tests: same UI, on loopback
    import app

    engine, demo = app.create_app(app_config)
    launched.port = __import__("browser_support").free_port()
    demo.launch(**app.launch_kwargs(launched), prevent_thread_lock=True, quiet=True)
    try:
        config = httpx.get(f"http://127.0.0.1:{launched.port}/config", timeout=10).json()
    finally:
        demo.close()
        engine.shutdown()
    texts = [str(c.get("props", {}).get("value", "")) for c in config["components"]]
    assert any("shared publicly without a login" in t and "ldm-banner" in t for t in texts)
