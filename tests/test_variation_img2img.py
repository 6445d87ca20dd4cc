"""Variation seeds in img2img and inpaint: the noise added to the init image is the seed's, mixed with the
variation seed's by the strength, or made at another size; pixels outside an inpaint mask stay the input's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ldm_ui.config import AppConfig
from ldm_ui.metadata import generation_fields, parse_infotext
from ldm_ui.requests import Img2ImgRequest, InpaintRequest, RequestError, VariationSeed
from tiny_models import build_tiny_sd

DEMO_MODELS = Path(__file__).resolve().parents[1] / "models"
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    tmp = tmp_path_factory.mktemp("variation-img2img")
    engine = Engine(AppConfig(models_dir=DEMO_MODELS, outputs_dir=tmp / "outputs", cache_dir=tmp / "cache",
                              preview_method="off")).start()
    yield engine
    engine.shutdown()


def scene(size=(64, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    w, h = size
    ImageDraw.Draw(image).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=(220, 30, 30))
    return image


def left_half_mask(size=(64, 64)) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((0, 0, size[0] // 2 - 1, size[1] - 1), fill=255)
    return mask


def pixels(output) -> np.ndarray:
    return np.asarray(output.image.convert("RGB"), dtype=np.float64)


def img2img(engine, seed=11, variation=None, strength=0.8, init_image=None, **changes):
    request = Img2ImgRequest(prompt=PROMPT, init_image=init_image or scene(), strength=strength, seed=seed, steps=8,
                             sampler="Euler", variation=variation, **changes)
    return engine.generate(request).outputs


def inpaint(engine, seed=11, variation=None, strength=0.9, sampler="Euler", **changes):
    request = InpaintRequest(prompt=PROMPT, init_image=scene(), mask=left_half_mask(), mask_blur_px=0,
                             strength=strength, seed=seed, steps=8, sampler=sampler, variation=variation, **changes)
    return engine.generate(request).outputs


def distance(a, b) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


@pytest.mark.parametrize("run", [img2img, inpaint], ids=["img2img", "inpaint"])
def test_same_seed_and_variation_seed_give_the_same_image_and_another_variation_seed_another(demo_engine, run):
    variation = VariationSeed(seed=99, strength=0.6)
    [first] = run(demo_engine, variation=variation)
    [again] = run(demo_engine, variation=variation)
    [other] = run(demo_engine, variation=VariationSeed(seed=7, strength=0.6))
    [plain] = run(demo_engine)
    assert np.array_equal(pixels(first), pixels(again))
    assert distance(first, other) > 0.5 and distance(first, plain) > 0.5
    info = parse_infotext(first.infotext)
    assert info.get_int("Variation seed") == 99 and info.settings["Variation seed strength"] == "0.6"


@pytest.mark.parametrize("run", [img2img, inpaint], ids=["img2img", "inpaint"])
def test_strength_0_is_no_variation_and_strength_1_is_the_variation_seeds_image(demo_engine, run):
    [plain] = run(demo_engine, seed=11)
    [at_0] = run(demo_engine, seed=11, variation=VariationSeed(seed=99, strength=0.0))
    [variation_seed_image] = run(demo_engine, seed=99)
    [at_1] = run(demo_engine, seed=11, variation=VariationSeed(seed=99, strength=1.0))
    assert np.array_equal(pixels(at_0), pixels(plain))
    assert "Variation seed" not in at_0.infotext
    assert distance(plain, variation_seed_image) > 0.5
    # a deterministic sampler: the noise added to the init image is all that differs between seeds
    assert np.array_equal(pixels(at_1), pixels(variation_seed_image))


def test_inpaint_at_full_strength_starts_from_the_variation_noise(demo_engine):
    """At denoising strength 1 the inpaint pipeline starts from pure noise instead of noising the image."""
    [plain] = inpaint(demo_engine, seed=11, strength=1.0)
    [at_1] = inpaint(demo_engine, seed=11, strength=1.0, variation=VariationSeed(seed=99, strength=1.0))
    [variation_seed_image] = inpaint(demo_engine, seed=99, strength=1.0)
    assert distance(plain, variation_seed_image) > 0.5
    assert np.array_equal(pixels(at_1), pixels(variation_seed_image))


@pytest.mark.parametrize("sampler", ["Euler", "Euler a"])
def test_inpaint_with_a_variation_keeps_every_pixel_outside_the_mask(demo_engine, sampler):
    source = np.asarray(scene(), dtype=np.float64)
    [plain] = inpaint(demo_engine, sampler=sampler)
    [varied] = inpaint(demo_engine, sampler=sampler, variation=VariationSeed(seed=99, strength=0.7))
    outside = np.asarray(left_half_mask()) == 0
    assert np.array_equal(pixels(varied)[outside], source[outside])
    inside = ~outside
    assert np.abs(pixels(varied)[inside] - pixels(plain)[inside]).mean() > 0.5  # the variation did change the inside


def test_img2img_seed_resize_writes_its_infotext_and_reads_back(demo_engine):
    [plain] = img2img(demo_engine, width=96, init_image=scene((96, 64)), height=64)
    [resized] = img2img(demo_engine, width=96, height=64, init_image=scene((96, 64)),
                        variation=VariationSeed(resize_from_width=64, resize_from_height=64))
    assert "Seed resize from: 64x64" in resized.infotext
    assert not np.array_equal(pixels(plain), pixels(resized))
    fields, _ = generation_fields(parse_infotext(resized.infotext))
    assert (fields["resize_from_width"], fields["resize_from_height"]) == (64, 64)


def test_a_nine_channel_inpainting_model_takes_a_variation(models_dir, tmp_path):
    """Its U-Net has 9 input channels, the noise only the latents' 4."""
    from ldm_ui.engine.engine import Engine

    shutil.copytree(models_dir / "diffusers", tmp_path / "models" / "diffusers")
    build_tiny_sd(tmp_path / "models" / "diffusers" / "tiny-inpaint", seed=1, in_channels=9)
    engine = Engine(AppConfig(models_dir=tmp_path / "models", outputs_dir=tmp_path / "outputs",
                              cache_dir=tmp_path / "cache", default_model="tiny-inpaint")).start()
    try:
        common = dict(prompt="x", init_image=scene(), mask=left_half_mask(), steps=3, seed=4, sampler="Euler")
        plain = engine.generate(InpaintRequest(**common)).outputs[0]
        varied = engine.generate(InpaintRequest(**common, variation=VariationSeed(seed=9, strength=1.0))).outputs[0]
        other_seed = engine.generate(InpaintRequest(**{**common, "seed": 9})).outputs[0]
        assert np.array_equal(pixels(varied), pixels(other_seed)) and not np.array_equal(pixels(varied), pixels(plain))
        img2img_varied = engine.generate(Img2ImgRequest(
            prompt="x", init_image=scene(), steps=3, seed=4, sampler="Euler",
            variation=VariationSeed(seed=9, strength=0.5))).outputs[0]
        assert "Variation seed: 9" in img2img_varied.infotext
    finally:
        engine.shutdown()


def test_a_variation_that_is_not_a_variation_seed_is_refused():
    with pytest.raises(RequestError, match="variation must be a VariationSeed"):
        Img2ImgRequest(prompt="x", init_image=scene(), variation={"seed": 3})
