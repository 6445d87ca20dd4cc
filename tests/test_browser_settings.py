"""A user saves default settings; they hold after a page reload and after the app restarts."""

from __future__ import annotations

import json

import pytest

from browser_support import browser_page, needs_chromium, running_app, set_number
from ldm_ui import user_settings

pytestmark = [pytest.mark.browser, needs_chromium]


def tab_values(page, tab: str) -> tuple:
    return (page.input_value(f"#{tab}-sampler input"), page.input_value(f"#{tab}-steps input[type=number]"),
            page.input_value(f"#{tab}-cfg input[type=number]"))


def test_saved_settings_survive_a_reload_and_a_restart(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        before = tab_values(page, "txt2img")
        page.get_by_role("tab", name="Settings").click()
        page.click("#settings-sampler input")
        page.get_by_role("option", name="DDIM", exact=True).click()
        set_number(page, "#settings-steps input[type=number]", 33)
        set_number(page, "#settings-cfg input[type=number]", 4.5)
        page.click("#settings-save")
        page.wait_for_function("document.querySelector('#settings-status').innerText.includes('Saved to')")
        page.get_by_role("tab", name="txt2img").click()
        after_save = tab_values(page, "txt2img")
        page.reload()
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function(
            "document.querySelector('#txt2img-steps input[type=number]').value === '33'")
        reloaded_txt2img = tab_values(page, "txt2img")
        page.get_by_role("tab", name="img2img").click()
        page.wait_for_selector("#img2img-steps input[type=number]")
        after_reload = reloaded_txt2img, tab_values(page, "img2img")

    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function(
            "document.querySelector('#txt2img-steps input[type=number]').value === '33'")
        after_restart = tab_values(page, "txt2img")
        page.get_by_role("tab", name="Settings").click()
        settings_steps = page.input_value("#settings-steps input[type=number]")

    assert before == ("Euler a", "20", "7")
    assert after_save == ("DDIM", "33", "4.5")
    assert after_reload == (("DDIM", "33", "4.5"), ("DDIM", "33", "4.5"))
    assert after_restart == ("DDIM", "33", "4.5") and settings_steps == "33"
    saved = json.loads(user_settings.settings_path(app_config).read_text())
    assert saved["sampler"] == "DDIM" and saved["steps"] == 33


def test_a_bad_value_in_the_file_is_named_and_the_rest_applies(app_config):
    path = user_settings.settings_path(app_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"steps": 500, "sampler": "Heun", "colour": "blue"}))
    settings, notes = user_settings.load(app_config)
    assert settings.sampler == "Heun" and settings.steps == 20
    assert notes == ["settings.json: steps must be a whole number from 1 to 150, got 500; left at its default",
                     "settings.json: unknown setting 'colour' ignored"]
