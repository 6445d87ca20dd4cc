"""A user opens Extras, drops an image, upscales it 2x with a learned model blended with Lanczos, sees the result,
and sends it to img2img."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from browser_support import browser_page, needs_chromium, running_app, screenshot
from tiny_upscalers import esrgan_state_dict, save_safetensors

pytestmark = [pytest.mark.browser, needs_chromium]


def test_upscale_in_extras_then_send_to_img2img(app_config, tmp_path):
    save_safetensors(esrgan_state_dict(scale=2), tmp_path / "upscalers" / "tiny-esrgan-2x.safetensors")
    (tmp_path / "upscalers" / "broken.pth").write_bytes(b"definitely not a checkpoint")
    app_config.upscaler_dirs = [tmp_path / "upscalers"]
    png = tmp_path / "in.png"
    image = Image.new("RGB", (48, 40), (30, 60, 200))
    ImageDraw.Draw(image).ellipse((10, 8, 38, 32), fill=(220, 30, 30))
    image.save(png)
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Extras").click()
        broken = page.inner_text("#extras-broken")
        page.locator("#extras-image input[type=file]").set_input_files(str(png))
        page.wait_for_selector("#extras-image img")
        page.click("#extras-upscaler input")
        page.locator("#extras-upscaler").get_by_role("option", name="tiny-esrgan-2x", exact=True).click()
        page.click("#extras-upscaler-2 input")
        page.locator("#extras-upscaler-2").get_by_role("option", name="Lanczos", exact=True).click()
        page.locator("#extras-upscaler-2-visibility input[type=number]").fill("0.5")
        page.locator("#extras-upscaler-2-visibility input[type=number]").press("Tab")
        page.click("#extras-run")
        page.wait_for_function("document.querySelector('#extras-status').innerText.includes('Done')")
        page.wait_for_selector("#extras-gallery img")
        status = page.inner_text("#extras-status")
        infotext = page.input_value("#extras-infotext textarea")
        screenshot(page, "extras")
        page.click("#extras-send-img2img")
        page.wait_for_selector("#img2img-image img", state="visible")
        sent_size = page.evaluate("(() => { const i = document.querySelector('#img2img-image img');"
                                  " return [i.naturalWidth, i.naturalHeight]; })()")
    assert "broken" in broken and "not listed" in broken.lower()
    assert "Upscaled to 96x80 with tiny-esrgan-2x" in status
    assert "Postprocess upscaler: tiny-esrgan-2x" in infotext and "Postprocess upscaler 2: Lanczos" in infotext
    saved = list((app_config.outputs_dir / "extras").rglob("*.png"))
    assert [Image.open(path).size for path in saved] == [(96, 80)]
    assert sent_size == [96, 80]
