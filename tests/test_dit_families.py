"""A DiT family (SD3's MMDiT, flow matching, 16-channel latents) loaded from a single file generates through the
engine: txt2img with x0 previews and cancel, flow-matching samplers only, img2img through diffusers' pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ldm_ui.config import AppConfig
from ldm_ui.requests import Cancelled, Failed, Finished, Img2ImgRequest, Preview, Txt2ImgRequest
from original_layouts import sd3_pipeline_to_original
from tiny_families import build_sd3, family_configs

SD3_FILE = "tiny-sd3.safetensors"


@pytest.fixture(scope="module")
def sd3_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("sd3")
    cache, families, models = root / "cache", root / "families", root / "models"
    pipe = build_sd3(root / "reference", cache)
    family_configs(root / "reference", families, "sd3")
    (models / "Stable-diffusion").mkdir(parents=True)
    save_file(sd3_pipeline_to_original(pipe), str(models / "Stable-diffusion" / SD3_FILE))
    engine = Engine(AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=cache,
                              default_model=SD3_FILE, preview_interval_s=0)).start()
    engine.models.single_file_configs = families
    yield engine
    engine.shutdown()


def txt2img(**changes) -> Txt2ImgRequest:
    settings = dict(prompt="a red circle", negative_prompt="blurry", model=SD3_FILE, sampler="Euler", steps=4,
                    cfg_scale=4.0, width=64, height=64, seed=11, preview_method="approx", preview_every_n_steps=1)
    return Txt2ImgRequest(**{**settings, **changes})


def test_sd3_txt2img_gives_x0_previews_of_its_16_channel_latents_and_an_image(sd3_engine):
    events = list(sd3_engine.submit(txt2img()).events())
    finished = events[-1]
    assert isinstance(finished, Finished), finished
    loaded = sd3_engine.models.current
    assert (loaded.family, loaded.pipe.vae.config.latent_channels) == ("sd3", 16)
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == 4 and all(p.image.size == (8, 8) for p in previews)  # one per step, per latent cell
    assert loaded.approx_preview.weight.shape == (16, 3)  # factors fitted against this VAE at load
    assert np.asarray(previews[-1].image).std() > 0
    # the factors are fitted to latents as the pipeline holds them, (mean - shift) * scaling: the same colors as a
    # fit that ignores the shift gives for unshifted latents
    from ldm_ui.engine.preview import LinearPreview

    vae = loaded.pipe.vae
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    means = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    ignoring_shift = type(loaded.vae)(loaded.pipe)
    ignoring_shift.shift_factor = 0.0
    unshifted = LinearPreview.fit(ignoring_shift)(means * scale)[0]
    shifted = loaded.approx_preview((means - shift) * scale)[0]
    assert np.abs(np.asarray(shifted, dtype=np.int16) - np.asarray(unshifted, dtype=np.int16)).max() <= 1
    assert loaded.sampler_names == ("Euler", "Euler a", "Heun")
    assert "Sampler: Euler" in finished.outputs[0].infotext
    again = sd3_engine.generate(txt2img(preview_method="off"), timeout=300).images[0]
    assert np.array_equal(np.asarray(again), np.asarray(finished.outputs[0].image))  # same seed, same image


def test_sd3_generation_can_be_interrupted_at_the_first_preview(sd3_engine):
    job = sd3_engine.submit(txt2img(steps=20))
    for event in job.events():
        if isinstance(event, Preview):
            job.cancel()
        last = event
    assert isinstance(last, Cancelled)


def test_samplers_that_do_not_fit_flow_matching_are_refused_by_name(sd3_engine):
    events = list(sd3_engine.submit(txt2img(sampler="DPM++ 2M Karras")).events())
    assert isinstance(events[-1], Failed)
    assert "'DPM++ 2M Karras' does not fit this model's flow-matching training; choose one of: Euler, Euler a, Heun" \
        in events[-1].message
    for sampler in ("Euler a", "Heun"):
        assert sd3_engine.generate(txt2img(sampler=sampler, preview_method="off"), timeout=300).images


def test_sd3_img2img_runs_through_diffusers_img2img_pipeline(sd3_engine):
    source = Image.new("RGB", (64, 64), (200, 30, 30))
    request = Img2ImgRequest(prompt="a red circle", model=SD3_FILE, sampler="Euler", steps=4, cfg_scale=4.0,
                             seed=3, init_image=source, strength=0.5, preview_method="off")
    result = sd3_engine.generate(request, timeout=300)
    assert result.images[0].size == (64, 64)
    assert type(sd3_engine.models.current.pipeline("AutoPipelineForImage2Image")).__name__ == \
        "StableDiffusion3Img2ImgPipeline"


def test_sd3_inpaint_keeps_the_pixels_outside_the_mask(sd3_engine):
    from ldm_ui.requests import InpaintRequest

    source = Image.new("RGB", (64, 64), (30, 30, 200))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    request = InpaintRequest(prompt="a red circle", model=SD3_FILE, sampler="Euler", steps=4, cfg_scale=4.0, seed=3,
                             init_image=source, mask=mask, mask_blur_px=0, strength=0.9, preview_method="off")
    image = np.asarray(sd3_engine.generate(request, timeout=300).images[0])
    assert (image[:8] == (30, 30, 200)).all() and not (image[24:40, 24:40] == (30, 30, 200)).all()
    assert type(sd3_engine.models.current.pipeline("AutoPipelineForInpainting")).__name__ == \
        "StableDiffusion3InpaintPipeline"


@pytest.mark.parametrize("sampler", ["Euler", "Heun"])
def test_flow_matching_steps_report_the_clean_latent_they_aim_at(sampler):
    """On the path x_t = (1 - sigma) x0 + sigma noise a perfect model predicts noise - x0: the preview's x0 is x0."""
    from ldm_ui.engine.samplers import make_scheduler

    scheduler = make_scheduler(sampler, {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0})
    scheduler.set_timesteps(5)
    generator = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(1, 16, 4, 4, generator=generator), torch.randn(1, 16, 4, 4, generator=generator)
    sample = noise
    for t in scheduler.timesteps[:3]:
        sample = scheduler.step(noise - x0, t, sample).prev_sample
        torch.testing.assert_close(scheduler.last_x0, x0)
