"""A user saves default settings; they hold after a page reload and after the app restarts."""

from __future__ import annotations

import json

import pytest

from PIL import Image

from browser_support import browser_page, needs_chromium, running_app, set_number
from ldm_ui import user_settings
from ldm_ui.metadata import read_infotext

pytestmark = [pytest.mark.browser, needs_chromium]


def tab_values(page, tab: str) -> tuple:
    return (page.input_value(f"#{tab}-sampler input"), page.input_value(f"#{tab}-steps input[type=number]"),
            page.input_value(f"#{tab}-cfg input[type=number]"))


def pattern_box(page):
    return page.locator("#settings-pattern").locator("textarea, input").first


def saving_values(page) -> tuple:
    """(format, quality, pattern, save txt, default clip skip) as the Settings tab shows them."""
    page.get_by_role("tab", name="Settings").click()
    page.wait_for_selector("#settings-quality input[type=number]")
    chosen = [f for f in ("png", "jpg", "webp") if page.is_checked(f"#settings-format input[value={f}]")]
    return (chosen, page.input_value("#settings-quality input[type=number]"), pattern_box(page).input_value(),
            page.is_checked("#settings-save-txt input"), page.input_value("#settings-clip-skip input[type=number]"))


def test_saved_settings_survive_a_reload_and_a_restart(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        before = tab_values(page, "txt2img")
        page.get_by_role("tab", name="Settings").click()
        page.click("#settings-sampler input")
        page.get_by_role("option", name="DDIM", exact=True).click()
        set_number(page, "#settings-steps input[type=number]", 33)
        set_number(page, "#settings-cfg input[type=number]", 4.5)
        set_number(page, "#settings-clip-skip input[type=number]", 2)
        page.check("#settings-format input[value=jpg]")
        set_number(page, "#settings-quality input[type=number]", 90)
        pattern_box(page).fill("[seed]-[prompt_words]")
        pattern_box(page).press("Tab")
        page.check("#settings-save-txt input")
        page.click("#settings-save")
        page.wait_for_function("document.querySelector('#settings-status').innerText.includes('Saved to')")
        page.get_by_role("tab", name="txt2img").click()
        after_save = tab_values(page, "txt2img")
        clip_skip = page.input_value("#txt2img-clip-skip input[type=number]")
        # a job now saves as the settings say: JPEG, the pattern's name, the .txt beside
        page.fill("#txt2img-prompt textarea", "a red circle")
        set_number(page, "#txt2img-steps input[type=number]", 2)
        set_number(page, "#txt2img-seed input", 77)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-infotext textarea').value.includes('Seed: 77')")
        infotext = page.input_value("#txt2img-infotext textarea")
        page.reload()
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function(
            "document.querySelector('#txt2img-steps input[type=number]').value === '33'")
        reloaded_txt2img = tab_values(page, "txt2img")
        page.get_by_role("tab", name="img2img").click()
        page.wait_for_selector("#img2img-steps input[type=number]")
        after_reload = reloaded_txt2img, tab_values(page, "img2img")
        saving_after_reload = saving_values(page)

    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function(
            "document.querySelector('#txt2img-steps input[type=number]').value === '33'")
        after_restart = tab_values(page, "txt2img")
        restart_clip_skip = page.input_value("#txt2img-clip-skip input[type=number]")
        saving_after_restart = saving_values(page)
        settings_steps = page.input_value("#settings-steps input[type=number]")

    assert before == ("Euler a", "20", "7")
    assert after_save == ("DDIM", "33", "4.5") and clip_skip == "2"
    assert after_reload == (("DDIM", "33", "4.5"), ("DDIM", "33", "4.5"))
    assert after_restart == ("DDIM", "33", "4.5") and settings_steps == "33" and restart_clip_skip == "2"
    assert saving_after_reload == saving_after_restart == (["jpg"], "90", "[seed]-[prompt_words]", True, "2")
    saved = json.loads(user_settings.settings_path(app_config).read_text())
    assert saved["sampler"] == "DDIM" and saved["steps"] == 33 and saved["samples_format"] == "jpg"
    [image] = (app_config.outputs_dir / "txt2img").rglob("*.jpg")
    assert image.name == "00000-77-a red circle.jpg" and "Clip skip: 2" in infotext
    with Image.open(image) as opened:
        assert opened.format == "JPEG" and read_infotext(opened) == infotext
    assert image.with_suffix(".txt").read_text(encoding="utf-8") == infotext


def export_file(page) -> dict:
    """Export the UI defaults and download the file; its JSON."""
    link = page.locator("#ui-config-file a").first
    before = link.get_attribute("href") if link.count() else None
    page.click("#ui-config-export")
    page.wait_for_function("(before) => { const a = document.querySelector('#ui-config-file a'); "
                           "return a && a.getAttribute('href') !== before; }", arg=before)
    with page.expect_download() as download:
        link.click()
    return json.loads(open(download.value.path(), encoding="utf-8").read())


def import_file(page, path) -> str:
    """Import the file through the upload button; the status line it answers with."""
    before = page.inner_text("#ui-config-status")
    with page.expect_file_chooser() as chooser:
        page.click("#ui-config-import")
    chooser.value.set_files(str(path))
    page.wait_for_function("(before) => { const text = document.querySelector('#ui-config-status').innerText; "
                           "return text !== before && text.includes('Imported'); }", arg=before)
    return page.inner_text("#ui-config-status")


def test_ui_defaults_export_then_import_restores_a_changed_default(app_config, tmp_path):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Settings").click()
        original = export_file(page)
        exported = tmp_path / "exported.json"
        exported.write_text(json.dumps(original))
        changed = {**original, "txt2img/steps/value": 42, "img2img/strength/value": 0.3,
                   "txt2img/colour/value": "blue", "txt2img/cfg_scale/value": 99, "inpaint/sampler/value": "Nope"}
        changed_file = tmp_path / "changed.json"
        changed_file.write_text(json.dumps(changed))
        status = import_file(page, changed_file)
        page.get_by_role("tab", name="txt2img").click()
        at_once = page.input_value("#txt2img-steps input[type=number]")
        page.reload()
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function("document.querySelector('#txt2img-steps input[type=number]').value === '42'")
        page.get_by_role("tab", name="img2img").click()
        reloaded_strength = page.input_value("#img2img-strength input[type=number]")
        page.get_by_role("tab", name="Settings").click()
        second = export_file(page)
        restoring = import_file(page, exported)
        page.reload()
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.wait_for_function("document.querySelector('#txt2img-steps input[type=number]').value === '20'")
        restored = tab_values(page, "txt2img")

    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)  # a restart after the second import: the original defaults
        page.wait_for_selector("#txt2img-steps input[type=number]")
        page.get_by_role("tab", name="img2img").click()
        restart_strength = page.input_value("#img2img-strength input[type=number]")

    assert original["txt2img/steps/value"] == 20 and original["img2img/strength/value"] == 0.75
    assert "txt2img/sampler/value" in original and "extras/upscaler/value" in original
    assert f"Imported {len(original) - 2} defaults, 2 of them changed: txt2img/steps/value = 42, " \
           "img2img/strength/value = 0.3." in status and "Left out 3" in status
    assert "txt2img/colour/value: no such widget" in status
    assert "txt2img/cfg_scale/value: must be from 0 to 30, got 99" in status
    assert "inpaint/sampler/value: must be one of 'Euler a'" in status and "got 'Nope'" in status
    assert at_once == "42" and reloaded_strength == "0.3"
    assert second["txt2img/steps/value"] == 42 and second["img2img/strength/value"] == 0.3
    assert f"Imported {len(original)} defaults, 2 of them changed" in restoring and "Left out" not in restoring
    assert restored == ("Euler a", "20", "7") and restart_strength == "0.75"


def test_a_broken_settings_file_is_named_on_the_page_and_the_app_serves(app_config):
    path = user_settings.settings_path(app_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"samples_format": "gif", "steps": 25}))
    (path.parent / "ui-config.json").write_text(json.dumps({"txt2img/steps/value": "many", "txt2img/seed/value": 5}))
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#txt2img-seed input")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '5'")
        steps = page.input_value("#txt2img-steps input[type=number]")
        page.get_by_role("tab", name="Settings").click()
        settings_status = page.inner_text("#settings-status")
        ui_config_status = page.inner_text("#ui-config-status")
    assert steps == "25"
    assert "output format must be one of png, jpg, webp, got 'gif'; left at its default" in settings_status
    assert "txt2img/steps/value: must be a number, got 'many'" in ui_config_status


def test_a_bad_value_in_the_file_is_named_and_the_rest_applies(app_config):
    path = user_settings.settings_path(app_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"steps": 500, "sampler": "Heun", "colour": "blue"}))
    settings, notes = user_settings.load(app_config)
    assert settings.sampler == "Heun" and settings.steps == 20
    assert notes == ["settings.json: steps must be a whole number from 1 to 150, got 500; left at its default",
                     "settings.json: unknown setting 'colour' ignored"]
