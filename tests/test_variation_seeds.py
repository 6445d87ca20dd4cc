"""Variation seed, variation strength and resize seed from WxH (txt2img's "Extra" seed settings)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ldm_ui.config import AppConfig
from ldm_ui.engine.noise import initial_noise, paste_centred
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.tasks.batch import seeded_generators
from ldm_ui.metadata import generation_fields, parse_infotext
from ldm_ui.requests import RequestError, Txt2ImgRequest, VariationSeed

DEMO_MODELS = Path(__file__).resolve().parents[1] / "models"
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    tmp = tmp_path_factory.mktemp("variation")
    engine = Engine(AppConfig(models_dir=DEMO_MODELS, outputs_dir=tmp / "outputs", cache_dir=tmp / "cache",
                              preview_method="off")).start()
    yield engine
    engine.shutdown()


def pixels(output) -> np.ndarray:
    return np.asarray(output.image.convert("RGB"), dtype=np.float64)


def generate(engine, seed=11, sampler="Euler", variation=None, **changes):
    request = Txt2ImgRequest(prompt=PROMPT, seed=seed, steps=8, sampler=sampler, variation=variation, **changes)
    return engine.generate(request).outputs


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ 2M"])
def test_without_variation_the_image_is_what_the_pipeline_makes_by_itself(demo_engine, sampler):
    """The loop draws the noise and hands it over as latents=; the pixels match a plain pipeline call, which
    draws it itself (an ancestral sampler also checks the generators end in the same state)."""
    [output] = generate(demo_engine, seed=5, sampler=sampler)
    model = demo_engine.models.current
    pipe = model.pipe
    pipe.scheduler = make_scheduler(sampler, model.base_scheduler_config, seed=5)
    latents = pipe(prompt=[PROMPT], negative_prompt=[""], num_inference_steps=8, guidance_scale=7.0,
                   width=64, height=64, generator=seeded_generators([5]), output_type="latent").images
    [direct] = model.vae.decode(latents)
    assert np.array_equal(pixels(output), np.asarray(direct.convert("RGB"), dtype=np.float64))
    assert "Variation seed" not in output.infotext


def test_no_variation_noise_equals_diffusers_prepare_latents(engine):
    """Tiny model, batch of two: the same noise tensor and the same generator state after drawing it."""
    pipe = engine.models.get(None).pipe
    mine, theirs = seeded_generators([3, 4]), seeded_generators([3, 4])
    noise = initial_noise(pipe, 64, 64, [3, 4], mine, None, [])
    drawn = pipe.prepare_latents(2, 4, 64, 64, torch.float32, torch.device("cpu"), theirs)
    assert torch.equal(noise * pipe.scheduler.init_noise_sigma, drawn)
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(mine, theirs))


def test_variation_strength_0_is_the_seed_1_is_the_variation_seed_and_half_is_between(demo_engine):
    [seed_image] = generate(demo_engine, seed=11)
    [variation_image] = generate(demo_engine, seed=99)
    [at_0] = generate(demo_engine, seed=11, variation=VariationSeed(seed=99, strength=0.0))
    [at_1] = generate(demo_engine, seed=11, variation=VariationSeed(seed=99, strength=1.0))
    [half] = generate(demo_engine, seed=11, variation=VariationSeed(seed=99, strength=0.5))
    assert np.array_equal(pixels(at_0), pixels(seed_image))
    assert np.array_equal(pixels(at_1), pixels(variation_image))  # a deterministic sampler: only the noise counts

    def distance(a, b):
        return float(np.abs(pixels(a) - pixels(b)).mean())

    apart = distance(seed_image, variation_image)
    assert apart > 5, "seeds 11 and 99 should give visibly different images"
    assert 0 < distance(half, seed_image) < apart and 0 < distance(half, variation_image) < apart
    assert "Variation seed: 99" in half.infotext and "Variation seed strength: 0.5" in half.infotext
    assert "Variation seed" not in at_0.infotext  # A1111 writes neither key at strength 0


def test_variation_seeds_step_through_the_batch_and_random_is_resolved_once(demo_engine):
    outputs = generate(demo_engine, seed=20, variation=VariationSeed(seed=-1, strength=0.3), batch_size=2,
                       batch_count=2)
    seeds = [parse_infotext(o.infotext).get_int("Variation seed") for o in outputs]
    assert seeds == [seeds[0], seeds[0] + 1, seeds[0] + 2, seeds[0] + 3]


def test_seed_resize_keeps_the_centre_of_the_noise(engine):
    pipe = engine.models.get(None).pipe
    small = initial_noise(pipe, 64, 64, [8], seeded_generators([8]), None, [])
    wide = initial_noise(pipe, 128, 64, [8], seeded_generators([8]),
                         VariationSeed(resize_from_width=64, resize_from_height=64), [])
    assert torch.equal(wide[..., :, 4:12], small)  # 64 px of latent width 8 centred in 16
    plain_wide = initial_noise(pipe, 128, 64, [8], seeded_generators([8]), None, [])
    assert torch.equal(wide[..., :, :4], plain_wide[..., :, :4])  # the border is the seed's noise at 128x64
    narrow = initial_noise(pipe, 64, 64, [8], seeded_generators([8]),
                           VariationSeed(resize_from_width=128, resize_from_height=64), [])
    assert torch.equal(narrow, plain_wide[..., :, 4:12])  # a larger source is cut to its centre


def test_paste_centred_handles_odd_differences():
    target = torch.zeros(1, 1, 5, 5)
    small = torch.ones(1, 1, 2, 2)
    out = paste_centred(small, target)
    assert out.sum() == 4 and torch.equal(out[0, 0, 1:3, 1:3], torch.ones(2, 2))


def test_seed_resize_end_to_end_writes_its_infotext_and_changes_the_image(demo_engine):
    [plain] = generate(demo_engine, seed=11, width=96)
    [resized] = generate(demo_engine, seed=11, width=96,
                         variation=VariationSeed(resize_from_width=64, resize_from_height=64))
    assert "Seed resize from: 64x64" in resized.infotext
    assert not np.array_equal(pixels(plain), pixels(resized))


def test_infotext_keys_read_back():
    text = ("a cat\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64, Variation seed: 42, "
            "Variation seed strength: 0.25, Seed resize from: 512x768")
    fields, notes = generation_fields(parse_infotext(text))
    assert (fields["variation_seed"], fields["variation_strength"]) == (42, 0.25)
    assert (fields["resize_from_width"], fields["resize_from_height"]) == (512, 768)
    assert notes == []


@pytest.mark.parametrize("kwargs, message", [
    ({"strength": 1.5}, "variation strength must be between 0 and 1, got 1.5"),
    ({"seed": -2}, "variation seed must be between -1 and"),
    ({"resize_from_width": 100, "resize_from_height": 64}, "resize seed from width must be 0 (off) or a multiple"),
    ({"resize_from_width": 64}, "needs both a width and a height"),
])
def test_bad_variation_values_are_refused_with_their_names(kwargs, message):
    with pytest.raises(RequestError, match=None) as error:
        VariationSeed(**kwargs)
    assert message in str(error.value)
