"""FLUX.1 and PixArt-Sigma (tiny random-weight models with a T5 tokenizer made here) generate through the engine:
Flux's packed 16-channel latents give previews and images of the requested size, its distilled guidance follows
the CFG scale and a negative prompt is dropped with a note; PixArt-Sigma runs through its older step callback;
tasks and controls the family registry says do not apply are refused with its reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.requests import (
    Cancelled, Failed, Finished, Img2ImgRequest, InpaintRequest, Preview, Txt2ImgRequest, VariationSeed,
)
from adapter_files import UNET_TARGETS, write_diffusers_lora
from tiny_families import build_flux, build_pixart_sigma

FLUX, PIXART = "tiny-flux", "tiny-pixart-sigma"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("dit")
    cache, models = root / "cache", root / "models"
    flux = build_flux(models / "diffusers" / FLUX, cache)
    build_pixart_sigma(models / "diffusers" / PIXART, cache)
    write_diffusers_lora(root / "loras" / "flux-style.safetensors", flux_lora_pairs(flux.transformer))
    engine = Engine(AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=cache, default_model=FLUX,
                              preview_interval_s=0, lora_dirs=[root / "loras"])).start()
    yield engine
    engine.shutdown()


def flux_lora_pairs(transformer, rank: int = 4):
    """A LoRA over the attention projections of Flux's transformer, in diffusers' (peft) layout."""
    generator = torch.Generator().manual_seed(3)
    return {("transformer", name): (torch.randn(rank, layer.in_features, generator=generator) * 0.5,
                                    torch.randn(layer.out_features, rank, generator=generator) * 0.5)
            for name, layer in transformer.named_modules()
            if isinstance(layer, torch.nn.Linear) and name.endswith(UNET_TARGETS)}


def txt2img(model: str, **changes) -> Txt2ImgRequest:
    settings = dict(prompt="a red circle", model=model, sampler="Euler", steps=3, cfg_scale=3.5, width=64,
                    height=96, seed=7, preview_method="approx", preview_every_n_steps=1)
    return Txt2ImgRequest(**{**settings, **changes})


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_flux_txt2img_unpacks_its_latents_for_previews_and_the_image(engine):
    events = list(engine.submit(txt2img(FLUX)).events())
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    loaded = engine.models.current
    assert (loaded.family, loaded.pipe.vae.config.latent_channels, type(loaded.pipe).__name__) == \
        ("flux", 16, "FluxPipeline")
    assert finished.outputs[0].image.size == (64, 96)  # not square: a wrong unpacking would scramble or fail
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 3 and all(p.image.size == (8, 12) for p in previews)  # one pixel per latent cell
    assert loaded.approx_preview.weight.shape == (16, 3)  # fitted against this VAE at load
    assert pixels(previews[-1].image).std() > 0
    again = engine.generate(txt2img(FLUX, preview_method="off"), timeout=300).images[0]
    assert np.array_equal(pixels(again), pixels(finished.outputs[0].image))  # same seed, same image
    other_seed = engine.generate(txt2img(FLUX, seed=8, preview_method="off"), timeout=300).images[0]
    assert not np.array_equal(pixels(other_seed), pixels(again))


def test_flux_cfg_scale_is_its_distilled_guidance_and_a_negative_prompt_is_dropped_with_a_note(engine):
    base = engine.generate(txt2img(FLUX, preview_method="off"), timeout=300)
    stronger = engine.generate(txt2img(FLUX, cfg_scale=6.0, preview_method="off"), timeout=300)
    assert not np.array_equal(pixels(base.images[0]), pixels(stronger.images[0]))  # reaches the guidance embedder
    events = list(engine.submit(txt2img(FLUX, negative_prompt="blurry", preview_method="off")).events())
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert "Negative prompt ignored: FLUX.1 is guidance-distilled" in finished.summary
    assert "blurry" not in finished.outputs[0].infotext
    assert np.array_equal(pixels(finished.outputs[0].image), pixels(base.images[0]))


def test_a_flux_lora_changes_the_image_through_diffusers_flux_loader_and_comes_off_again(engine):
    base = engine.generate(txt2img(FLUX, preview_method="off"), timeout=300)
    styled = engine.generate(txt2img(FLUX, prompt="a red circle <lora:flux-style:1>", preview_method="off"),
                             timeout=300)
    assert 'Lora hashes: "flux-style: ' in styled.outputs[0].infotext
    assert np.abs(pixels(styled.images[0]) - pixels(base.images[0])).mean() > 2
    again = engine.generate(txt2img(FLUX, preview_method="off"), timeout=300)
    assert np.array_equal(pixels(again.images[0]), pixels(base.images[0]))  # the weights restored exactly


def test_flux_offers_only_the_flow_matching_samplers_its_shifted_schedule_takes(engine):
    engine.generate(txt2img(FLUX, steps=1, preview_method="off"), timeout=300)
    assert engine.models.current.sampler_names == ("Euler", "Euler a")
    events = list(engine.submit(txt2img(FLUX, sampler="Heun")).events())
    assert isinstance(events[-1], Failed)
    assert "'Heun' does not fit this model's flow-matching training; choose one of: Euler, Euler a" \
        in events[-1].message
    assert engine.generate(txt2img(FLUX, sampler="Euler a", preview_method="off"), timeout=300).images


def test_flux_img2img_and_inpaint_run_through_diffusers_flux_pipelines(engine):
    source = Image.new("RGB", (64, 96), (200, 30, 30))
    request = Img2ImgRequest(prompt="a red circle", model=FLUX, sampler="Euler", steps=4, cfg_scale=3.5, seed=3,
                             init_image=source, strength=0.5, preview_method="approx", preview_every_n_steps=1)
    events = list(engine.submit(request).events())
    assert isinstance(events[-1], Finished), events[-1]
    assert events[-1].outputs[0].image.size == (64, 96)
    assert [e.image.size for e in events if isinstance(e, Preview)] == [(8, 12)] * 2  # 2 of 4 steps at 0.5
    assert type(engine.models.current.pipeline("AutoPipelineForImage2Image")).__name__ == "FluxImg2ImgPipeline"
    mask = Image.new("L", (64, 96), 0)
    mask.paste(255, (16, 16, 48, 48))
    inpaint = InpaintRequest(prompt="a red circle", model=FLUX, sampler="Euler", steps=4, cfg_scale=3.5, seed=3,
                             init_image=Image.new("RGB", (64, 96), (30, 30, 200)), mask=mask, mask_blur_px=0,
                             strength=0.9, preview_method="off")
    image = pixels(engine.generate(inpaint, timeout=300).images[0])
    assert (image[:8] == (30, 30, 200)).all() and not (image[24:40, 24:40] == (30, 30, 200)).all()
    assert type(engine.models.current.pipeline("AutoPipelineForInpainting")).__name__ == "FluxInpaintPipeline"


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_flux_hires_fix_denoises_the_upscaled_latents_at_the_new_size(engine, upscaler):
    from ldm_ui.requests import HiresFix

    request = txt2img(FLUX, width=64, height=64, steps=2, hires=HiresFix(upscaler=upscaler, scale=1.5, steps=2,
                                                                      denoising_strength=0.6))
    events = list(engine.submit(request).events())
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    assert finished.outputs[0].image.size == (96, 96)
    assert [e.image.size for e in events if isinstance(e, Preview)][-1] == (12, 12)  # the hires pass's previews


def test_flux_refuses_variation_seeds_with_the_reason(engine):
    events = list(engine.submit(txt2img(FLUX, variation=VariationSeed(seed=5, strength=0.5))).events())
    assert isinstance(events[-1], Failed)
    assert "variation seeds work with U-Net models" in events[-1].message


def test_pixart_sigma_txt2img_through_its_older_step_callback(engine):
    events = list(engine.submit(txt2img(PIXART, sampler="DPM++ 2M")).events())
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    loaded = engine.models.current
    assert (loaded.family, type(loaded.pipe).__name__) == ("pixart", "PixArtSigmaPipeline")
    assert finished.outputs[0].image.size == (64, 96)  # no resolution binning to another aspect ratio
    previews = [e for e in events if isinstance(e, Preview)]
    assert [p.image.size for p in previews] == [(8, 12)] * 3 and pixels(previews[-1].image).std() > 0
    again = engine.generate(txt2img(PIXART, sampler="DPM++ 2M", preview_method="off"), timeout=300).images[0]
    assert np.array_equal(pixels(again), pixels(finished.outputs[0].image))
    with_negative = engine.generate(txt2img(PIXART, sampler="DPM++ 2M", negative_prompt="blurry",
                                            preview_method="off"), timeout=300)
    assert not np.array_equal(pixels(with_negative.images[0]), pixels(again))  # PixArt uses its negative prompt
    assert "Negative prompt: blurry" in with_negative.outputs[0].infotext


def test_pixart_sigma_can_be_interrupted_at_the_first_preview(engine):
    job = engine.submit(txt2img(PIXART, steps=20))
    for event in job.events():
        if isinstance(event, Preview):
            job.cancel()
        last = event
    assert isinstance(last, Cancelled)
    assert engine.generate(txt2img(PIXART, steps=2, preview_method="off"), timeout=300).images  # still serving


def test_pixart_sigma_refuses_img2img_inpaint_and_lora_with_the_registry_reason(engine):
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    img2img = Img2ImgRequest(prompt="a red circle", model=PIXART, steps=4, seed=3, init_image=source, strength=0.5)
    events = list(engine.submit(img2img).events())
    assert isinstance(events[-1], Failed)
    assert events[-1].message == ("img2img does not work with tiny-pixart-sigma (PixArt-Sigma): diffusers has no "
                                  "img2img pipeline for PixArt-Sigma (txt2img only)")
    inpaint = InpaintRequest(prompt="a red circle", model=PIXART, steps=4, seed=3, init_image=source,
                             mask=Image.new("L", (64, 64), 255))
    events = list(engine.submit(inpaint).events())
    assert isinstance(events[-1], Failed) and "inpainting does not work with tiny-pixart-sigma" in events[-1].message
    events = list(engine.submit(txt2img(PIXART, prompt="a red circle <lora:style:1>")).events())
    assert isinstance(events[-1], Failed)
    assert "LoRA does not work with tiny-pixart-sigma (PixArt-Sigma): diffusers' PixArt-Sigma pipeline has no " \
           "LoRA loader" in events[-1].message


def test_a_diffusers_folder_of_a_family_ldm_ui_does_not_know_is_refused_naming_what_it_looked_for(tmp_path):
    """A class-conditional DiT (no text encoder) is a diffusers pipeline, but not one ldm-ui can prompt."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    from ldm_ui.engine.engine import Engine
    from tiny_families import _vae

    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=1, sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    DiTPipeline(transformer=transformer, vae=_vae(), scheduler=DDIMScheduler()).save_pretrained(
        tmp_path / "models" / "diffusers" / "class-dit")
    engine = Engine(AppConfig(models_dir=tmp_path / "models", outputs_dir=tmp_path / "outputs",
                              cache_dir=tmp_path / "cache", default_model="class-dit")).start()
    try:
        events = list(engine.submit(txt2img("class-dit")).events())
    finally:
        engine.shutdown()
    assert isinstance(events[-1], Failed)
    assert events[-1].message.startswith("class-dit (DiTPipeline) is not a checkpoint family ldm-ui knows; it "
                                         "looked for a text-to-image pipeline with a U-Net")
    assert "FluxPipeline (FLUX.1), PixArtSigmaPipeline (PixArt-Sigma)" in events[-1].message
