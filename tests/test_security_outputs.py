"""Saved results belong to the user whose job made them; the outputs folder can expose no secrets.

Two users share one app with logins on. Alice makes images, an interpolation (frames, GIF, MP4 in a folder of
their own) and a file no job made; Bob guesses every name in the outputs folder through the file route, as
the red team did, and gets nothing, while Alice fetches her own. Without logins the outputs folder is served
except its dot-folders; and an outputs folder that is or holds the home or project folder refuses to start.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from gradio_client import Client

from browser_support import running_app
from test_security_guard import BOB, BOB_PASSWORD, PASSWORD, USER, signed_in


def call(client: Client, api_name: str, **values):
    """Call an endpoint by parameter name; inputs without a default that the test leaves out are sent as None."""
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api_name]
    for param in api["parameters"]:
        if not param["parameter_has_default"] and param["parameter_name"] not in values:
            values[param["parameter_name"]] = None
    return client.predict(api_name=api_name, **values)


@pytest.fixture
def two_users(app_config):
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    return app_config


def test_a_user_fetches_only_files_their_own_jobs_made(two_users):
    outputs = two_users.outputs_dir
    with running_app(two_users) as (url, _, _):
        client = Client(url, auth=(USER, PASSWORD), verbose=False)
        call(client, "/txt2img", prompt="a red circle", steps=2, seed=7, width=64, height=64)
        call(client, "/interpolate", mode="seeds", prompt="a red circle", seed=3, seed_b=4, frames=2, steps=2,
             width=64, height=64)
        not_a_job = outputs / "xyplot" / "00000-xyplot.png"  # what an extension writes itself
        not_a_job.parent.mkdir(parents=True)
        not_a_job.write_bytes(b"\x89PNG grid")
        made = sorted(p for p in outputs.rglob("*") if p.is_file())
        kinds = {p.suffix for p in made}
        assert {".png", ".gif", ".mp4"} <= kinds, made
        with signed_in(url) as alice, signed_in(url, BOB, BOB_PASSWORD) as bob:
            def fetch(client: httpx.Client, path: Path) -> int:
                return client.get(f"{url}/gradio_api/file={path}").status_code

            for path in made[:130]:  # Bob guesses every name there is (bounded)
                assert fetch(bob, path) == 404, path
            for path in made:
                assert fetch(alice, path) == (404 if path == not_a_job else 200), path
            assert "red circle" in alice.get(f"{url}/gradio_api/file={made[0]}").text or made[0].suffix != ".png"


def test_dot_folders_under_outputs_are_never_served(app_config):
    secret = app_config.outputs_dir / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_text("-----BEGIN PRIVATE KEY-----")
    visible = app_config.outputs_dir / "txt2img" / "00000-1.png"
    visible.parent.mkdir(parents=True)
    visible.write_bytes(b"\x89PNG")
    with running_app(app_config) as (url, _, _), httpx.Client(timeout=30) as owner:  # no login: one user
        assert owner.get(f"{url}/gradio_api/file={secret}").status_code == 404
        assert owner.get(f"{url}/gradio_api/file={app_config.outputs_dir}/txt2img/../.ssh/id_rsa").status_code == 404
        assert owner.get(f"{url}/gradio_api/file={visible}").status_code == 200


@pytest.mark.parametrize("folder", [Path.home(), Path(__file__).resolve().parent.parent, Path("."), Path("/")])
def test_an_outputs_folder_holding_home_or_the_project_refuses_to_start(folder, capsys):
    import app

    assert app.main(["--outputs-dir", str(folder), "--model", "no-such-model"]) == 2
    error = capsys.readouterr().err
    assert "--outputs-dir" in error and ("home folder" in error or "project folder" in error
                                         or "current directory" in error)
