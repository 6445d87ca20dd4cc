"""A user opens txt2img's Hires. fix accordion, turns it on, generates, and sees the second pass run and the
larger image; PNG info sends an AUTOMATIC1111 hires infotext back into the accordion."""

from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]

# every status line the page shows, recorded as it changes (a short-lived one is not missed)
RECORD_STATUS = """() => {
    window.ldmStatuses = [];
    const target = document.querySelector('#txt2img-status');
    new MutationObserver(() => window.ldmStatuses.push(target.innerText))
        .observe(target, {childList: true, subtree: true, characterData: true});
}"""

A1111_HIRES = (
    "a red circle on a blue background\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 64x64, Model: tiny-sd, Denoising strength: 0.45, "
    "Hires upscale: 1.5, Hires steps: 12, Hires upscaler: Latent (nearest-exact), Hires sampler: DDIM, "
    "Hires prompt: a big red circle"
)


def test_hires_fix_in_the_browser_runs_a_second_pass_and_shows_the_larger_image(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#txt2img-steps input[type=number]", 4)
        set_number(page, "#txt2img-seed input", 77)
        page.click("#txt2img-hires button:has-text('Hires. fix')")
        page.check("#txt2img-hires-enabled input")
        set_number(page, "#txt2img-hires-steps input[type=number]", 30)
        set_number(page, "#txt2img-hires-denoising input[type=number]", 1)
        page.evaluate(RECORD_STATUS)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')")
        page.wait_for_selector("#txt2img-gallery img")
        statuses = page.evaluate("window.ldmStatuses")
        status = page.inner_text("#txt2img-status")
        infotext = page.input_value("#txt2img-infotext textarea")
        shot = screenshot(page, "txt2img-hires")
    assert any("hires: step" in s and "/30" in s for s in statuses), statuses
    assert "Hires fix: 128x128 with Latent, 30 of 30 steps" in status
    assert "Hires upscale: 2" in infotext and "Hires upscaler: Latent" in infotext and "Hires steps: 30" in infotext
    saved = list((app_config.outputs_dir / "txt2img").rglob("*.png"))
    assert [Image.open(path).size for path in saved] == [(128, 128)]
    assert shot.stat().st_size > 10_000


def test_png_info_sends_an_a1111_hires_fix_into_the_accordion(app_config, tmp_path):
    png = tmp_path / "hires.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", A1111_HIRES)
    Image.new("RGB", (96, 96), (200, 30, 30)).save(png, pnginfo=info)
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="PNG info").click()
        page.locator("#pnginfo-image input[type=file]").set_input_files(str(png))
        page.wait_for_function("document.querySelector('#pnginfo-result').innerText.includes('Hires upscaler')")
        page.click("#pnginfo-send-txt2img")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '5'")
        page.click("#txt2img-hires button:has-text('Hires. fix')")
        page.wait_for_selector("#txt2img-hires-enabled input:checked")
        values = {
            "upscaler": page.input_value("#txt2img-hires-upscaler input"),
            "scale": page.input_value("#txt2img-hires-scale input[type=number]"),
            "steps": page.input_value("#txt2img-hires-steps input[type=number]"),
            "denoising": page.input_value("#txt2img-hires-denoising input[type=number]"),
            "sampler": page.input_value("#txt2img-hires-sampler input"),
            "prompt": page.input_value("#txt2img-hires-prompt textarea"),
        }
        screenshot(page, "pnginfo-sent-hires")
    assert values == {"upscaler": "Latent (nearest-exact)", "scale": "1.5", "steps": "12", "denoising": "0.45",
                      "sampler": "DDIM", "prompt": "a big red circle"}
