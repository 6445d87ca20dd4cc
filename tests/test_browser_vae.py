"""A user picks a VAE beside the model, sees it named with its hash, and generates with it."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import save_file

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number
from ldm_layout import vae_to_ldm

pytestmark = [pytest.mark.browser, needs_chromium]


def test_pick_a_vae_and_generate_with_it(app_config, tmp_path):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(app_config.models_dir / "diffusers" / "tiny-sd" / "vae")
    bright = copy.deepcopy(vae)
    with torch.no_grad():
        bright.decoder.conv_out.bias += 0.4
    (tmp_path / "vaes").mkdir()
    state = {k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae_to_ldm(bright).items()}
    save_file(state, str(tmp_path / "vaes" / "bright.safetensors"))
    app_config.vae_dirs = [tmp_path / "vaes"]

    with running_app(app_config) as (url, engine, _demo), browser_page() as page:
        page.goto(url)
        page.click("#vae-select input")
        page.get_by_role("option", name="bright.safetensors", exact=True).click()
        page.wait_for_function("document.querySelector('#vae-status').innerText.includes('bright.safetensors')",
                               timeout=120_000)
        status = page.inner_text("#vae-status")
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#txt2img-steps input[type=number]", 3)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')",
                               timeout=120_000)
        infotext = page.input_value("#txt2img-infotext textarea")
        screenshot(page, "vae-picked")
        loaded = engine.models.current

    assert "hash" in status
    assert "VAE: bright" in infotext and "VAE hash: " in infotext
    assert loaded.vae_selection.file.name == "bright.safetensors"
