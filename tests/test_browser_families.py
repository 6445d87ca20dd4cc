"""A user switches between a U-Net model, FLUX.1 and PixArt-Sigma: controls the family lacks are disabled or
hidden with a note in the tab, a Flux image is made from the browser, and switching back turns everything on."""

from __future__ import annotations

import pytest

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number
from ldm_ui.config import AppConfig
from tiny_families import build_flux, build_pixart_sigma
from tiny_models import build_tiny_sd

pytestmark = [pytest.mark.browser, needs_chromium]


def pick_model(page, name: str) -> None:
    from playwright.sync_api import expect

    selector = page.locator("#model-select input")
    selector.fill(name)
    selector.press("Enter")
    expect(page.locator("#model-status")).to_contain_text(name, timeout=120_000)


def test_controls_follow_the_loaded_family_with_a_note(tmp_path):
    from playwright.sync_api import expect

    expect.set_options(timeout=60_000)  # the default 5 s is short on a busy 2-core machine

    models, cache = tmp_path / "models", tmp_path / "cache"
    build_tiny_sd(models / "diffusers" / "tiny-sd")
    build_flux(models / "diffusers" / "tiny-flux", cache)
    build_pixart_sigma(models / "diffusers" / "tiny-pixart", cache)
    config = AppConfig(models_dir=models, outputs_dir=tmp_path / "outputs", cache_dir=cache, default_model="tiny-sd",
                       preview_method="off")
    with running_app(config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        note, negative = page.locator("#txt2img-family-note"), page.locator("#txt2img-negative-prompt textarea")
        expect(page.locator("#txt2img-controlnet")).to_be_visible()
        expect(note).to_be_hidden()
        expect(negative).to_be_enabled()

        page.click("#txt2img-sampler input")
        page.get_by_role("option", name="DPM++ 2M Karras", exact=True).click()
        pick_model(page, "tiny-flux")
        expect(page.locator("#txt2img-sampler input")).to_have_value("Euler")  # Flux's list: Euler, Euler a
        expect(note).to_be_visible()
        expect(note).to_contain_text("tiny-flux is a FLUX.1 model")
        expect(note).to_contain_text("Negative prompt: off. FLUX.1 is guidance-distilled")
        expect(negative).to_be_disabled()
        expect(page.locator("#txt2img-cfg")).to_contain_text("CFG scale (FLUX.1: distilled guidance)")
        expect(page.locator("#txt2img-clip-skip input[type=number]")).to_be_disabled()
        expect(page.locator("#txt2img-controlnet")).to_be_hidden()
        expect(page.locator("#txt2img-seed-extras")).to_be_hidden()
        page.fill("#txt2img-prompt textarea", "a red circle")
        set_number(page, "#txt2img-steps input[type=number]", 2)
        set_number(page, "#txt2img-width input[type=number]", 64)
        set_number(page, "#txt2img-height input[type=number]", 64)
        page.click("#txt2img-generate")
        expect(page.locator("#txt2img-status")).to_contain_text("Done: 1 image(s)", timeout=120_000)
        assert "Model: tiny-flux" in page.input_value("#txt2img-infotext textarea")
        screenshot(page, "family-flux-txt2img")
        sampler = page.locator("#txt2img-sampler input")  # e.g. what PNG info brings from an SD image
        sampler.fill("DPM++ 2M Karras")
        sampler.press("Enter")
        page.click("#txt2img-generate")
        expect(page.locator("#txt2img-status")).to_contain_text(
            "'DPM++ 2M Karras' does not fit this model's flow-matching training; choose one of: Euler, Euler a")

        pick_model(page, "tiny-pixart")
        page.get_by_role("tab", name="img2img", exact=True).click()
        img2img_note = page.locator("#img2img-family-note")
        expect(img2img_note).to_contain_text("Img2img: not available. Diffusers has no img2img pipeline for "
                                             "PixArt-Sigma")
        expect(page.locator("#img2img-generate")).to_be_disabled()
        screenshot(page, "family-pixart-img2img")
        page.get_by_role("tab", name="txt2img", exact=True).click()
        expect(negative).to_be_enabled()  # PixArt-Sigma has a negative prompt
        expect(note).to_contain_text("LoRA: off. Diffusers' PixArt-Sigma pipeline has no LoRA loader")

        pick_model(page, "tiny-sd")
        expect(note).to_be_hidden()
        expect(page.locator("#txt2img-cfg")).not_to_contain_text("distilled")
        expect(page.locator("#txt2img-controlnet")).to_be_visible()
        page.get_by_role("tab", name="img2img", exact=True).click()
        expect(page.locator("#img2img-generate")).to_be_enabled()
        expect(img2img_note).to_be_hidden()
