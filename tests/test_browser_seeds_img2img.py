"""A user sets a variation seed in img2img's extra seed settings, reuses the result's variation seed with ♻,
sends the result to inpaint, uploads a mask and inpaints with a variation seed: the infotexts name the variation,
and the pixels outside the mask are the img2img result's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]

DONE = "document.querySelector('#{tab}-status').innerText.includes('Done')"


def test_variation_seed_in_img2img_and_inpaint(app_config, tmp_path):
    source = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(source).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    source.save(tmp_path / "source.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)  # repaint the left half
    mask.save(tmp_path / "mask.png")

    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="img2img", exact=True).click()
        page.set_input_files("#img2img-image input[type=file]", str(tmp_path / "source.png"))
        page.wait_for_selector("#img2img-image img")
        page.fill("#img2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#img2img-steps input[type=number]", 4)
        set_number(page, "#img2img-seed input", 21)
        page.click("#img2img-seed-extras button:has-text('Extra seed settings')")
        set_number(page, "#img2img-variation-seed input", 500)
        set_number(page, "#img2img-variation-strength input[type=number]", 0.4)
        page.click("#img2img-generate")
        page.wait_for_function(DONE.format(tab="img2img"), timeout=120_000)
        img2img_infotext = page.input_value("#img2img-infotext textarea")

        # ♻ beside the variation seed takes the result's (the selection logic is txt2img's browser test)
        screenshot(page, "img2img-variation")
        set_number(page, "#img2img-variation-seed input", 3)
        page.click("#img2img-variation-seed-reuse")
        page.wait_for_function("document.querySelector('#img2img-variation-seed input').value === '500'")

        page.click("#img2img-send-inpaint")
        page.wait_for_selector("#inpaint-status")  # the tab renders when it is first shown
        page.wait_for_function("document.querySelector('#inpaint-status').innerText.includes('Received')")
        received = page.inner_text("#inpaint-status")
        page.click("button:has-text('Upload a mask instead')")
        page.set_input_files("#inpaint-mask-upload input[type=file]", str(tmp_path / "mask.png"))
        page.wait_for_selector("#inpaint-mask-upload img")
        set_number(page, "#inpaint-mask-blur input[type=number]", 0)
        set_number(page, "#inpaint-steps input[type=number]", 4)
        set_number(page, "#inpaint-seed input", 21)
        page.click("#inpaint-seed-extras button:has-text('Extra seed settings')")
        set_number(page, "#inpaint-variation-seed input", 600)
        set_number(page, "#inpaint-variation-strength input[type=number]", 0.7)
        page.click("#inpaint-generate")
        page.wait_for_function(DONE.format(tab="inpaint"), timeout=120_000)
        inpaint_infotext = page.input_value("#inpaint-infotext textarea")
        screenshot(page, "inpaint-variation")

    assert "seed 21" in received, received
    assert "Seed: 21," in img2img_infotext
    assert "Variation seed: 500, Variation seed strength: 0.4" in img2img_infotext
    assert "Seed: 21," in inpaint_infotext and "Variation seed: 600, Variation seed strength: 0.7" in inpaint_infotext
    [sent] = [Image.open(path).convert("RGB") for path in (app_config.outputs_dir / "img2img").rglob("*.png")]
    [result] = list((app_config.outputs_dir / "inpaint").rglob("*.png"))
    before, after = np.asarray(sent, dtype=np.int16), np.asarray(Image.open(result).convert("RGB"), dtype=np.int16)
    assert np.array_equal(after[:, 32:], before[:, 32:])  # outside the mask: the img2img result, exactly
    assert np.abs(after[:, :32] - before[:, :32]).mean() > 1  # inside: repainted
