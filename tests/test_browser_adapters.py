"""A user picks a LoRA, sets a ControlNet unit with an uploaded image, generates, and looks at the result."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from adapter_files import build_tiny_controlnet, random_lora, write_diffusers_lora
from browser_support import ARTIFACTS, browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def test_pick_lora_and_controlnet_then_generate(app_config, models_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(models_dir / "diffusers" / "tiny-sd")
    write_diffusers_lora(tmp_path / "loras" / "tiny-style.safetensors", random_lora(base.unet, seed=4))
    build_tiny_controlnet(models_dir / "diffusers" / "tiny-sd", models_dir / "ControlNet" / "tiny-controlnet")
    app_config.lora_dirs = [tmp_path / "loras"]
    control = tmp_path / "circle.png"
    image = Image.new("RGB", (64, 64), (30, 60, 220))
    ImageDraw.Draw(image).ellipse((6, 6, 30, 30), fill=(220, 30, 30))
    image.save(control)

    with running_app(app_config) as (url, engine, _), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        page.click("#txt2img-lora-accordion button:has-text('LoRA')")
        page.click("#txt2img-lora-name input")
        page.click("ul[role=listbox] li:has-text('tiny-style')")
        page.click("#txt2img-lora-insert")
        page.wait_for_function(
            "document.querySelector('#txt2img-prompt textarea').value.includes('<lora:tiny-style:1>')")

        page.click("#txt2img-controlnet button:has-text('ControlNet')")
        page.set_input_files("#txt2img-cn0-image input[type=file]", str(control))
        page.wait_for_selector("#txt2img-cn0-preview img")
        assert page.is_checked("#txt2img-cn0-enable input"), "uploading a control image should enable the unit"
        set_number(page, "#txt2img-steps input[type=number]", 4)
        set_number(page, "#txt2img-seed input", 77)
        page.click("#txt2img-generate")
        page.wait_for_function(
            "document.querySelector('#txt2img-infotext textarea').value.includes('Seed: 77')", timeout=120_000)
        infotext = page.input_value("#txt2img-infotext textarea")
        shot = screenshot(page, "txt2img-lora-controlnet")

        page.click("button[role=tab]:has-text('LoRA/ControlNet')")
        page.click("#adapters-refresh")
        page.wait_for_function("document.querySelector('#adapters-loaded').innerText.includes('tiny_style')")
        tab_text = page.inner_text("#adapters-lora-table") + page.inner_text("#adapters-preprocessor-table")
        screenshot(page, "adapters-tab")

    assert "<lora:tiny-style:1>" in infotext and 'Lora hashes: "tiny-style: ' in infotext
    assert "ControlNet 0" in infotext and "Model: tiny-controlnet" in infotext and "Module: canny" in infotext
    assert "tiny-style" in tab_text and "needs a download" in tab_text
    assert shot.stat().st_size > 10_000 and (ARTIFACTS / "adapters-tab.png").is_file()
