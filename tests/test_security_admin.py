"""Only an admin changes app-wide state; a user's presets go to their own folder and never replace shipped ones.

Bob (not an admin) calls the extension toggle and "save preset" handlers through the API by their function
index, as the red team did: the wildcards extension stays on for everyone and the shipped preset file stays
as it was. Alice (the first login, so the admin) toggles the extension; Bob's own preset lands in
presets/users/bob/ and only he sees it.
"""

from __future__ import annotations

import shutil

import pytest
from browser_support import running_app
from ldm_ui.config import PROJECT_ROOT, ConfigError, config_from_args
from test_security_guard import BOB, BOB_PASSWORD, PASSWORD, USER, signed_in


def call_fn(client, url: str, index: int, *data) -> list:
    """Run an event handler that has no API name, by its index, the way the page does (queue=False events)."""
    answer = client.post(url + "/gradio_api/run/predict",
                         json={"data": list(data), "fn_index": index, "session_hash": "attacker"})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def fn_index(demo, name: str, elem_id: str) -> int:
    """The index of the event handler `name` that takes the component `elem_id` as an input."""
    for index, fn in demo.fns.items():
        if getattr(fn.fn, "__name__", "") == name and any(getattr(c, "elem_id", None) == elem_id for c in fn.inputs):
            return index
    raise AssertionError(f"no handler {name} on {elem_id}")


@pytest.fixture
def shared_app(app_config, tmp_path):
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    app_config.presets_dir = tmp_path / "presets"
    shutil.copytree(PROJECT_ROOT / "presets", app_config.presets_dir)
    return app_config


def test_only_the_admin_toggles_extensions(shared_app):
    with running_app(shared_app) as (url, _, demo):
        toggle = fn_index(demo, "on_toggle", "extension-wildcards-enabled")
        with signed_in(url, BOB, BOB_PASSWORD) as bob, signed_in(url) as alice:
            message, table, _banner, _checkbox = call_fn(bob, url, toggle, False)
            assert "Only an admin" in message
            assert 'data-extension="wildcards" data-state="enabled"' in table
            message, table, _banner, _checkbox = call_fn(alice, url, toggle, False)
            assert "Only an admin" not in message
            assert 'data-extension="wildcards" data-state="off"' in table
            call_fn(alice, url, toggle, True)


def test_a_user_saves_presets_to_their_own_folder_and_never_over_shipped_ones(shared_app):
    shipped = shared_app.presets_dir / "demo-shapes.json"
    original = shipped.read_bytes()
    with running_app(shared_app) as (url, _, demo):
        save = fn_index(demo, "save_preset", "txt2img-preset-name")
        settings = ["a huge square", "", "Euler a", 150, 7.0, 2048, 2048, None, "approx"]
        apply = fn_index(demo, "apply", "txt2img-preset")
        with signed_in(url, BOB, BOB_PASSWORD) as bob, signed_in(url) as alice:
            status, *_ = call_fn(bob, url, save, "demo-shapes", True, *settings)
            assert "shared preset" in status and "cannot be replaced" in status
            assert shipped.read_bytes() == original
            status, *_ = call_fn(bob, url, save, "bob-look", True, *settings)
            assert "Saved preset" in status
            assert (shared_app.presets_dir / "users" / BOB / "bob-look.json").is_file()
            assert not (shared_app.presets_dir / "bob-look.json").exists()
            *_, note, _applied = call_fn(alice, url, apply, "bob-look", "", None, None)
            assert "unknown preset 'bob-look'" in note  # Bob's preset is his own
            *updates, note, _applied = call_fn(bob, url, apply, "bob-look", "", None, None)
            assert "Applied preset **bob-look**" in note and 150 in updates


def test_admin_flag_names_a_login():
    config = config_from_args(["--auth", "a:pw", "--auth", "b:pw", "--admin", "b"])
    from ldm_ui.access import is_admin

    assert is_admin(config, "b") and not is_admin(config, "a")
    default = config_from_args(["--auth", "a:pw", "--auth", "b:pw"])
    assert is_admin(default, "a") and not is_admin(default, "b")
    assert is_admin(config_from_args([]), None)  # no login: the one user is the admin
    with pytest.raises(ConfigError, match="not one of the logins"):
        config_from_args(["--auth", "a:pw", "--admin", "mallory"])
