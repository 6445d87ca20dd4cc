"""A user picks a style under the prompt, generates (the infotext has the final prompt), and saves a new style."""

from __future__ import annotations

import pytest

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number
from ldm_ui.styles import load_styles

pytestmark = [pytest.mark.browser, needs_chromium]


def test_pick_generate_and_save_a_style(app_config, tmp_path):
    app_config.styles_file = tmp_path / "styles.csv"
    app_config.styles_file.write_text('name,prompt,negative_prompt\nNight,"a white {prompt} on a black background",'
                                      '"blurry, dark"\nbroken,one,two,three\n')
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.click("#txt2img-styles button:has-text('Styles')")
        note = page.inner_text("#txt2img-styles-note")
        page.fill("#txt2img-prompt textarea", "circle")
        page.click("#txt2img-styles-picker input")
        page.get_by_role("option", name="Night", exact=True).click()
        page.keyboard.press("Escape")
        set_number(page, "#txt2img-steps input[type=number]", 2)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')",
                               timeout=120_000)
        infotext = page.input_value("#txt2img-infotext textarea")
        prompt = page.input_value("#txt2img-prompt textarea")
        screenshot(page, "styles-applied")

        page.fill("#txt2img-negative-prompt textarea", "green")
        page.fill("#txt2img-styles-name textarea, #txt2img-styles-name input", "Mine, \"quoted\"")
        page.click("#txt2img-styles-save")
        page.wait_for_function("document.querySelector('#txt2img-styles-note').innerText.includes('Saved style')")

    assert "line 3: 4 fields but the header has 3" in note
    assert prompt == "a white circle on a black background"
    assert infotext.startswith("a white circle on a black background\nNegative prompt: blurry, dark\n")
    saved = load_styles(app_config.styles_file).styles
    assert saved['Mine, "quoted"'].prompt == "a white circle on a black background"
    assert saved['Mine, "quoted"'].negative_prompt == "green" and "Night" in saved
