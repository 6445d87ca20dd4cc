"""A user generates an image, sends it to Inpaint, paints a stroke over it with the brush, and inpaints."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def wait_for_gallery_file(page, gallery: str, timeout_s: float = 90) -> None:
    page.wait_for_selector(f"{gallery} img", timeout=timeout_s * 1000)


def test_paint_a_mask_stroke_and_inpaint(app_config):
    with running_app(app_config) as (url, engine, _), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#txt2img-steps input[type=number]", 3)
        page.click("#txt2img-generate")
        wait_for_gallery_file(page, "#txt2img-gallery")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')")

        page.click("#txt2img-send-inpaint")
        page.wait_for_selector("#inpaint-editor canvas")
        page.wait_for_function("document.querySelector('#inpaint-status').innerText.includes('Received')")
        assert page.input_value("#inpaint-prompt textarea") == "a red circle on a blue background"
        # the background arrives a moment after the tab switch; wait until the canvas has its size
        canvas = page.locator("#inpaint-editor canvas").first
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (canvas.bounding_box() or {}).get("width", 0) < 100:
            time.sleep(0.2)
        time.sleep(1.0)
        box = canvas.bounding_box()
        assert box and box["width"] >= 100, box

        # one horizontal brush stroke through the middle of the picture (the canvas is wider than the image:
        # a stroke must start on the image to paint)
        y = box["y"] + box["height"] * 0.5
        page.mouse.move(box["x"] + box["width"] * 0.35, y)
        page.mouse.down()
        for fraction in np.linspace(0.35, 0.65, 12):
            page.mouse.move(box["x"] + box["width"] * fraction, y)
        page.mouse.up()
        time.sleep(0.5)

        set_number(page, "#inpaint-steps input[type=number]", 4)
        page.click("#inpaint-generate")
        page.wait_for_function(
            "['Done', 'Failed', 'empty', 'Interrupted', 'no image'].some("
            "w => document.querySelector('#inpaint-status').innerText.includes(w))", timeout=180_000)
        shot = screenshot(page, "inpaint")
        status = page.inner_text("#inpaint-status")
        assert "Done" in status, status
        wait_for_gallery_file(page, "#inpaint-gallery")
        infotext = page.input_value("#inpaint-infotext textarea")

    assert "Denoising strength 0.75: 3 of 4 steps run." in status
    assert "Mask blur: 4" in infotext and "Inpaint area: whole picture" in infotext
    assert shot.stat().st_size > 10_000
    source = next((app_config.outputs_dir / "txt2img").rglob("*.png"))
    results = list((app_config.outputs_dir / "inpaint").rglob("*.png"))
    assert len(results) == 1
    before = np.asarray(Image.open(source).convert("RGB"), dtype=np.int16)
    after = np.asarray(Image.open(results[0]).convert("RGB"), dtype=np.int16)
    assert after.shape == before.shape
    changed = np.any(after != before, axis=2)
    assert changed.sum() > 20, "the painted stroke did not change the image"
    # the stroke ran left to right through the middle: the change is centred there and wider than tall,
    # and the corners, far from the stroke even after the mask blur, are the txt2img pixels exactly
    rows, cols = np.nonzero(changed)
    assert abs(rows.mean() - 32) < 5 and abs(cols.mean() - 32) < 5, (rows.mean(), cols.mean())
    assert np.ptp(cols) > np.ptp(rows), (np.ptp(cols), np.ptp(rows))
    for corner in (changed[:6, :6], changed[:6, -6:], changed[-6:, :6], changed[-6:, -6:]):
        assert not corner.any()
