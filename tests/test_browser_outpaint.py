"""A user upscales nothing, just extends: drops an image in Outpaint, extends it to the right and down, and gets the
larger image with the original intact; Extras sends its result to Outpaint."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def test_outpaint_in_the_browser_extends_the_canvas_and_keeps_the_original(app_config, tmp_path):
    png = tmp_path / "in.png"
    source = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(source).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    source.save(png)
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Outpaint").click()
        page.locator("#outpaint-image input[type=file]").set_input_files(str(png))
        page.wait_for_selector("#outpaint-image img")
        page.fill("#outpaint-prompt textarea", "a red circle on a blue background")
        set_number(page, "#outpaint-steps input[type=number]", 4)
        set_number(page, "#outpaint-right input[type=number]", 32)
        set_number(page, "#outpaint-down input[type=number]", 16)
        page.click("#outpaint-generate")
        page.wait_for_function("document.querySelector('#outpaint-status').innerText.includes('Done')")
        status = page.inner_text("#outpaint-status")
        infotext = page.input_value("#outpaint-infotext textarea")
        screenshot(page, "outpaint")
    assert "Outpainted 64x64 to 96x80" in status
    assert "Outpaint right: 32" in infotext and "Outpaint down: 16" in infotext
    saved = list((app_config.outputs_dir / "outpaint").rglob("*.png"))
    assert len(saved) == 1
    result = np.asarray(Image.open(saved[0]).convert("RGB"))
    assert result.shape == (80, 96, 3)
    np.testing.assert_array_equal(result[:48, :48], np.asarray(source)[:48, :48])  # beyond the 16px overlap
