"""A user types a prompt and watches the token counter, adds the demo embedding from the picker, sets Clip skip,
generates, and sends a PNG with `Clip skip: 2` back from PNG info."""

from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number
from ldm_ui.config import AppConfig

pytestmark = [pytest.mark.browser, needs_chromium]


def counter(page, which: str = "prompt") -> str:
    return page.inner_text(f"#txt2img-{which}-token-count").strip()


def test_counter_picker_and_clip_skip(tmp_path):
    config = AppConfig(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache", default_model="demo-shapes")
    png = tmp_path / "clip-skip.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red circle\nSteps: 4, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64, "
                                "Clip skip: 3")
    Image.new("RGB", (64, 64)).save(png, pnginfo=info)
    with running_app(config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle")
        page.wait_for_function("document.querySelector('#txt2img-prompt-token-count').innerText.trim() === '3/14'")
        # the built-in model reads 14 tokens a chunk: a second chunk starts and the counter grows to /28
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background " * 2 + "(red:1.2)")
        page.wait_for_function("document.querySelector('#txt2img-prompt-token-count').innerText.trim() === '15/28'")
        page.fill("#txt2img-negative-prompt textarea", "green BREAK blue")
        page.wait_for_function(
            "document.querySelector('#txt2img-negative-token-count').innerText.trim() === '15/28'")

        page.fill("#txt2img-prompt textarea", "a")
        page.click("#txt2img-embedding-accordion")
        page.click("#txt2img-embedding-insert")
        page.wait_for_function(
            "document.querySelector('#txt2img-prompt textarea').value === 'a, demo-redcircle'")
        page.fill("#txt2img-prompt textarea", "a demo-redcircle on a blue background")
        page.wait_for_function("document.querySelector('#txt2img-prompt-token-count').innerText.trim() === '7/14'")
        page.fill("#txt2img-negative-prompt textarea", "")
        set_number(page, "#txt2img-clip-skip input[type=number]", 2)
        set_number(page, "#txt2img-steps input[type=number]", 4)
        page.click("#txt2img-generate")
        page.wait_for_function(
            "document.querySelector('#txt2img-infotext textarea').value.includes('Clip skip: 2')")
        infotext = page.input_value("#txt2img-infotext textarea")
        screenshot(page, "prompt-tools")

        page.get_by_role("tab", name="Interpolate").click()
        page.fill("#interpolate-prompt-b textarea", "a blue circle")
        page.wait_for_function(
            "document.querySelector('#interpolate-prompt-b-token-count').innerText.trim() === '3/14'")

        page.get_by_role("tab", name="PNG info").click()
        page.locator("#pnginfo-image input[type=file]").set_input_files(str(png))
        page.wait_for_function("document.querySelector('#pnginfo-result').innerText.includes('Clip skip')")
        page.click("#pnginfo-send-txt2img")
        page.wait_for_function(
            "document.querySelector('#txt2img-clip-skip input[type=number]').value === '3'")
    assert "TI hashes: \"demo-redcircle: " in infotext
