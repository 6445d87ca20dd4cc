"""A user sets a variation seed in txt2img's extra seed settings, generates a batch, reuses the seed of the image
they selected (not the last one), rolls a random seed, and reads the variation back through PNG info."""

from __future__ import annotations

import pytest

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def test_variation_seed_and_seed_buttons(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#txt2img-steps input[type=number]", 3)
        set_number(page, "#txt2img-seed input", 11)
        set_number(page, "#txt2img-batch-size input[type=number]", 2)
        page.click("#txt2img-seed-extras button:has-text('Extra seed settings')")
        set_number(page, "#txt2img-variation-seed input", 99)
        set_number(page, "#txt2img-variation-strength input[type=number]", 0.5)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')",
                               timeout=120_000)
        infotext = page.input_value("#txt2img-infotext textarea")

        # select the first of the two images: ♻ takes its seeds, not the last image's (once both thumbnails show)
        page.wait_for_selector("#txt2img-gallery button[aria-label='Thumbnail 2 of 2'] img", state="visible")
        page.click("#txt2img-gallery button[aria-label='Thumbnail 1 of 2']")
        page.wait_for_function("document.querySelector('#txt2img-infotext textarea').value.includes('Seed: 11,')")
        screenshot(page, "txt2img-variation")
        set_number(page, "#txt2img-seed input", 5)
        set_number(page, "#txt2img-variation-seed input", 5)
        page.click("#txt2img-seed-reuse")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '11'")
        page.click("#txt2img-variation-seed-reuse")
        page.wait_for_function("document.querySelector('#txt2img-variation-seed input').value === '99'")
        page.click("#txt2img-seed-random")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '-1'")

        # PNG info reads the variation back and sends it to txt2img
        set_number(page, "#txt2img-variation-strength input[type=number]", 0)
        saved = sorted((app_config.outputs_dir / "txt2img").rglob("*-11.png"))[0]
        page.get_by_role("tab", name="PNG info").click()
        page.locator("#pnginfo-image input[type=file]").set_input_files(str(saved))
        page.wait_for_function("document.querySelector('#pnginfo-result').innerText.includes('Variation seed')")
        page.click("#pnginfo-send-txt2img")
        page.wait_for_function(
            "document.querySelector('#txt2img-variation-strength input[type=number]').value === '0.5'")
        sent_seed = page.input_value("#txt2img-variation-seed input")

    # the infotext shown is the last image's: its variation seed steps with its seed, as A1111's does
    assert "Seed: 12," in infotext and "Variation seed: 100, Variation seed strength: 0.5" in infotext
    assert sent_seed == "99"
