"""Gradio's folder is the app's own; error texts show no server paths; --help warns about --auth passwords.

Every Gradio app on a machine shares <tmp>/gradio by default and serves any file in it. The app makes its own
folder (mode 0700) instead: a file another program planted in the shared folder is refused, the user's own
upload is served, and Gradio deletes the app's uploads after a day. An upload is deleted as soon as the browser
sessions that used it end, and is served only to the user who uploaded it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import httpx
from gradio_client import Client

from browser_support import running_app
from ldm_ui.config import build_arg_parser
from test_security_guard import BOB, BOB_PASSWORD, PASSWORD, USER, signed_in
from test_security_outputs import call


def test_the_gradio_folder_is_private_and_foreign_files_are_not_served(app_config, tmp_path):
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD)]
    shared = Path(tempfile.gettempdir()) / "gradio" / "planted-by-another-app"
    shared.mkdir(parents=True, exist_ok=True)
    planted = shared / "secret.txt"
    planted.write_text("another app's upload")
    try:
        with running_app(app_config) as (url, _, demo), signed_in(url) as alice:
            folder = Path(os.environ["GRADIO_TEMP_DIR"])
            assert folder != shared.parent and stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert alice.get(f"{url}/gradio_api/file={planted}").status_code == 403
            uploaded = alice.post(url + "/gradio_api/upload", files={"files": ("mine.txt", b"my own", "text/plain")})
            path = uploaded.json()[0]
            assert Path(path).is_relative_to(folder)
            own = alice.get(f"{url}/gradio_api/file={path}")
            assert own.status_code == 200 and own.content == b"my own"
            assert demo.delete_cache == (3600, 24 * 3600)
    finally:
        planted.unlink()
        shared.rmdir()


def test_uploads_go_when_the_session_ends_and_only_their_uploader_gets_them(app_config, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    app_config.listen = True
    app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    picture = tmp_path / "alices-photo.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(picture)
    with running_app(app_config) as (url, _, demo), signed_in(url, BOB, BOB_PASSWORD) as bob:
        client = Client(url, auth=(USER, PASSWORD), verbose=False)
        session = client.session_hash
        client.predict(handle_file(str(picture)), api_name="/pnginfo")  # uploads it, then an event uses it
        [path] = [p for p in Path(os.environ["GRADIO_TEMP_DIR"]).rglob("alices-photo.png")]
        # another signed-in user can neither fetch it nor pass it to an event, even knowing its path
        assert bob.get(f"{url}/gradio_api/file={path}").status_code == 404
        stolen = bob.post(url + "/gradio_api/queue/join", json={
            "data": [{"path": str(path), "meta": {"_type": "gradio.FileData"}}], "fn_index": 0, "session_hash": "b"})
        assert stolen.status_code == 400 and "not one of your uploads" in stolen.text
        with httpx.Client(cookies=client.cookies, timeout=30) as alice:
            assert alice.get(f"{url}/gradio_api/file={path}").status_code == 200  # the uploader gets it
        client.close()  # ends the session: its heartbeat stops, Gradio runs the unload event
        assert demo.ldm_uploads.wait_ended(session, 60)
        assert not path.exists() and not path.parent.exists()
        assert bob.get(f"{url}/gradio_api/file={path}").status_code in (403, 404)


def test_error_texts_name_no_server_paths(app_config):
    with running_app(app_config) as (url, _, _):
        client = Client(url, verbose=False)
        messages = [str(call(client, "/txt2img", prompt="x", steps=2, model="no-such-model")[1]),
                    str(call(client, "/txt2img", prompt="x <lora:no-such-lora:1>", steps=2)[1])]
        for message in messages:
            assert "no-such" in message
            for secret in (str(app_config.models_dir), str(app_config.outputs_dir), "/tmp/", str(Path.home())):
                assert secret not in message, message
        with httpx.Client(timeout=30) as owner:
            answer = owner.post(url + "/gradio_api/queue/join", json={"data": [{
                "path": str(app_config.models_dir / "diffusers"), "meta": {"_type": "gradio.FileData"}}],
                "fn_index": 0, "session_hash": "x"})
            assert answer.status_code == 400 and str(app_config.models_dir) not in answer.text


def test_help_says_auth_passwords_show_in_the_process_list():
    text = " ".join(build_arg_parser().format_help().split())
    assert "process list" in text and "prefer --auth-file" in text


def test_a_session_end_deletes_only_uploads_no_one_else_may_still_need(tmp_path):
    from ldm_ui.uploads import UploadRegistry

    def made(name: str) -> str:
        path = tmp_path / name / "picture.png"  # Gradio's layout: a folder named by the content hash
        path.parent.mkdir()
        path.write_bytes(b"png")
        return str(path)

    shared, twice, result = made("shared"), made("twice"), made("result-copy")
    registry = UploadRegistry()
    registry.uploaded("alice", [shared, twice])
    registry.uploaded("bob", [shared, twice])  # the same picture: one file
    registry.used("alice-tab", [shared, twice, result])
    registry.used("bob-tab", [shared])
    assert registry.end_session("alice-tab") == []  # bob's tab uses one; bob's upload of the other is unused yet
    assert all(Path(p).exists() for p in (shared, twice, result))
    registry.used("bob-tab", [twice])
    assert registry.end_session("bob-tab") == sorted([shared, twice])
    assert not Path(shared).exists() and not Path(twice).parent.exists()
    assert Path(result).exists()  # a file the app made, never uploaded: left to Gradio's daily sweep
