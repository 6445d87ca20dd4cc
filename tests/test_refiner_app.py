"""The SDXL refiner as users reach it: AUTOMATIC1111's API fields (`refiner_checkpoint`, `refiner_switch_at`) on
/sdapi/v1/txt2img and /img2img, and the Refiner accordion of txt2img in the browser (pick, generate, a refused
refiner in the status line, PNG info sending a refiner back), on tiny SDXL-shaped models."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from api_assets import decode, encode
from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number
from ldm_ui.config import AppConfig
from tiny_models import build_refiner_models

SMALL = {"prompt": "a red cat", "steps": 10, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler a"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner-app")
    models = build_refiner_models(root / "models")
    config = AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=root / "cache", api=True,
                       default_model="tiny-sdxl", preview_method="approx")
    with running_app(config) as (url, engine, _demo):
        yield url, engine, config


@pytest.fixture
def api(app):
    url, _, _ = app
    with httpx.Client(base_url=f"{url}/sdapi/v1", timeout=300) as client:
        yield client


def test_sdapi_runs_the_refiner_from_automatic1111_fields(api):
    plain = api.post("/txt2img", json=SMALL).json()
    response = api.post("/txt2img", json={**SMALL, "refiner_checkpoint": "tiny-refiner", "refiner_switch_at": 0.7})
    assert response.status_code == 200, response.text
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert "Refiner: tiny-refiner [" in infotext and "Refiner switch at: 0.7" in infotext
    refined = decode(response.json()["images"][0])
    assert decode(response.json()["images"][0]).info["parameters"] == infotext
    assert not np.array_equal(np.asarray(refined), np.asarray(decode(plain["images"][0])))

    init = encode(refined)
    response = api.post("/img2img", json={**SMALL, "init_images": [init], "denoising_strength": 0.6,
                                          "refiner_checkpoint": "tiny-refiner", "refiner_switch_at": 0.5})
    assert response.status_code == 200, response.text
    assert "Refiner switch at: 0.5" in json.loads(response.json()["info"])["infotexts"][0]
    # "None" (AUTOMATIC1111's own value for no refiner) and a switch at 1 run the model alone
    for off in ({"refiner_checkpoint": "None"}, {"refiner_checkpoint": "tiny-refiner", "refiner_switch_at": 1.0}):
        body = api.post("/txt2img", json={**SMALL, **off}).json()
        assert "Refiner" not in json.loads(body["info"])["infotexts"][0]
        assert np.array_equal(np.asarray(decode(body["images"][0])), np.asarray(decode(plain["images"][0])))


def test_sdapi_refuses_a_bad_refiner_with_its_name(api):
    response = api.post("/txt2img", json={**SMALL, "refiner_checkpoint": "tiny-sd"})
    assert response.status_code >= 400
    assert "'tiny-sd' is not an SDXL model" in response.text
    response = api.post("/txt2img", json={**SMALL, "refiner_checkpoint": "nope"})
    assert response.status_code == 404 and "tiny-refiner" in response.text  # the list of models to pick from
    response = api.post("/txt2img", json={**SMALL, "refiner_checkpoint": "tiny-refiner", "refiner_switch_at": 0})
    assert response.status_code >= 400 and "refiner switch at must be between 0.01 and 1" in response.text
    assert api.post("/txt2img", json=SMALL).status_code == 200  # still serving


# ---- the browser

def pick(page, selector: str, value: str) -> None:
    """Choose `value` in a Gradio dropdown (type it and press Enter, as a user can)."""
    field = page.locator(f"{selector} input")
    field.click()
    page.locator(f"{selector} li[data-value='{value}'], ul[role=listbox] li:has-text('{value}')").first.click()


@pytest.mark.browser
@needs_chromium
def test_refiner_accordion_runs_the_refiner_and_shows_a_refusal(app):
    url, _engine, config = app
    with browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red cat")
        set_number(page, "#txt2img-steps input[type=number]", 10)
        set_number(page, "#txt2img-seed input", 3)
        page.click("#txt2img-refiner button:has-text('Refiner')")
        page.wait_for_selector("#txt2img-refiner-checkpoint input")
        assert page.input_value("#txt2img-refiner-checkpoint input") == "None"
        assert page.input_value("#txt2img-refiner-switch-at input[type=number]") == "0.8"
        pick(page, "#txt2img-refiner-checkpoint", "tiny-refiner")
        set_number(page, "#txt2img-refiner-switch-at input[type=number]", 0.7)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')")
        status = page.inner_text("#txt2img-status")
        infotext = page.input_value("#txt2img-infotext textarea")
        screenshot(page, "txt2img-refiner")

        pick(page, "#txt2img-refiner-checkpoint", "tiny-sd")
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('not an SDXL model')")
        refused = page.inner_text("#txt2img-status")
    assert "3 steps after the base's 7" in status, status
    assert "Refiner: tiny-refiner [" in infotext and "Refiner switch at: 0.7" in infotext
    assert "'tiny-sd'" in refused and "SDXL refiner" in refused


@pytest.mark.browser
@needs_chromium
def test_png_info_sends_the_refiner_into_the_accordion(app, tmp_path):
    png = tmp_path / "refined.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "a red cat\nSteps: 12, Sampler: Euler a, CFG scale: 7, Seed: 9, Size: 64x64, "
                                "Model: tiny-sdxl, Refiner: tiny-refiner [0123456789], Refiner switch at: 0.65")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(png, pnginfo=info)
    url, _engine, _config = app
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="PNG info").click()
        page.locator("#pnginfo-image input[type=file]").set_input_files(str(png))
        page.wait_for_function("document.querySelector('#pnginfo-result').innerText.includes('Refiner')")
        page.click("#pnginfo-send-txt2img")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '9'")
        page.click("#txt2img-refiner button:has-text('Refiner')")
        page.wait_for_function(
            "document.querySelector('#txt2img-refiner-checkpoint input')?.value === 'tiny-refiner'")
        switch = page.input_value("#txt2img-refiner-switch-at input[type=number]")
    assert switch == "0.65"
