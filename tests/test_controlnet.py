"""ControlNet through the engine with a tiny random ControlNet: units, weights, guidance windows, preprocessors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from adapter_files import build_tiny_controlnet
from ldm_ui.engine.controlnet import list_controlnets, units_from_infotext
from ldm_ui.engine.engine import JobFailed
from ldm_ui.engine.preprocessors import PreprocessorError, preprocess
from ldm_ui.metadata import parse_infotext
from ldm_ui.requests import ControlNetUnit, Img2ImgRequest, RequestError, Txt2ImgRequest

TINY_CN = "tiny-controlnet"


@pytest.fixture(scope="session")
def tiny_controlnet(models_dir):
    build_tiny_controlnet(models_dir / "diffusers" / "tiny-sd", models_dir / "ControlNet" / TINY_CN)
    return TINY_CN


def circle_image(size: int = 64) -> Image.Image:
    image = Image.new("RGB", (size, size), (30, 60, 220))
    ImageDraw.Draw(image).ellipse((6, 6, 28, 28), fill=(220, 30, 30))
    return image


def run(engine, units=(), cls=Txt2ImgRequest, **extra) -> tuple[np.ndarray, str]:
    request = cls(prompt="a red circle", steps=4, seed=3, sampler="Euler", controlnets=tuple(units), **extra)
    finished = engine.generate(request, timeout=120)
    return np.asarray(finished.outputs[0].image, dtype=np.int16), finished.outputs[0].infotext


def unit(model=TINY_CN, **changes) -> ControlNetUnit:
    return ControlNetUnit(model=model, image=circle_image(), preprocessor=changes.pop("preprocessor", "canny"),
                          **changes)


def test_controlnet_changes_the_image_and_zero_weight_or_window_equals_none(engine, tiny_controlnet):
    base, base_info = run(engine)
    controlled, info = run(engine, [unit()])
    weight_zero, _ = run(engine, [unit(weight=0.0)])
    window_zero, _ = run(engine, [unit(guidance_start=0.0, guidance_end=0.0)])
    disabled, _ = run(engine, [unit(enabled=False)])
    assert np.abs(controlled - base).max() > 10, "the ControlNet had no effect"
    assert np.array_equal(weight_zero, base), "weight 0 must equal no ControlNet"
    assert np.array_equal(window_zero, base), "guidance end 0 must equal no ControlNet"
    assert np.array_equal(disabled, base)
    assert "ControlNet" not in base_info
    recorded = units_from_infotext(parse_infotext(info).settings)
    assert recorded == [{"model": TINY_CN, "preprocessor": "canny", "weight": 1.0, "guidance_start": 0.0,
                         "guidance_end": 1.0, "canny_low": 100, "canny_high": 200}]


def test_guidance_window_and_weight_act_gradually(engine, tiny_controlnet):
    base, _ = run(engine)
    full, _ = run(engine, [unit()])
    late_half, _ = run(engine, [unit(guidance_start=0.5)])
    weak, _ = run(engine, [unit(weight=0.3)])
    for partial in (late_half, weak):
        assert 0 < np.abs(partial - base).mean() < np.abs(full - base).mean()


def test_two_units_run_as_a_multicontrolnet(engine, tiny_controlnet):
    one, _ = run(engine, [unit()])
    two, info = run(engine, [unit(), unit(preprocessor="none", weight=0.8, guidance_end=0.5)])
    assert np.abs(two - one).max() > 5
    settings = parse_infotext(info).settings
    assert "Module: none" in settings["ControlNet 1"] and "Guidance End: 0.5" in settings["ControlNet 1"]
    assert len(units_from_infotext(settings)) == 2


def test_img2img_with_controlnet(engine, tiny_controlnet):
    init = Image.new("RGB", (64, 64), (200, 200, 40))
    plain, _ = run(engine, cls=Img2ImgRequest, init_image=init, strength=0.6)
    controlled, info = run(engine, [unit()], cls=Img2ImgRequest, init_image=init, strength=0.6)
    assert np.abs(controlled - plain).max() > 5
    assert "ControlNet 0" in info and "Denoising strength" in info


def test_controlnet_models_share_the_base_weights(engine, tiny_controlnet):
    run(engine, [unit()])
    loaded = engine.models.current
    unet = loaded.pipe.unet
    run(engine, [unit(weight=0.5)])
    assert engine.models.current is loaded and loaded.pipe.unet is unet


def test_bad_units_are_refused_with_clear_messages(engine, tiny_controlnet, models_dir):
    with pytest.raises(RequestError, match="guidance start .* must not be after"):
        unit(guidance_start=0.8, guidance_end=0.2)
    with pytest.raises(JobFailed, match="unknown preprocessor 'sketchify'; choose one of: none, canny"):
        run(engine, [unit(preprocessor="sketchify")])
    with pytest.raises(RequestError, match="ControlNet weight must be between 0 and 2"):
        unit(weight=3.0)
    with pytest.raises(RequestError, match="at most 3 ControlNet units"):
        Txt2ImgRequest(prompt="x", controlnets=(unit(),) * 4)
    with pytest.raises(JobFailed, match="unknown ControlNet model 'nope'"):
        run(engine, [unit(model="nope")])
    assert [e.name for e in list_controlnets(engine.config)] == [TINY_CN]


def test_an_extension_preprocessor_is_usable_by_name(engine, tiny_controlnet):
    from PIL import ImageOps

    engine.controlnet_preprocessors["mirror"] = ImageOps.mirror
    base, _ = run(engine)
    mirrored, info = run(engine, [unit(preprocessor="mirror")])
    assert np.abs(mirrored - base).max() > 5 and "Module: mirror" in info


def test_preprocessors_offline_and_the_ones_that_need_downloads(tmp_path):
    edges = np.asarray(preprocess(circle_image(), "canny", 64, 64, tmp_path))
    assert edges.shape == (64, 64, 3) and set(np.unique(edges)) <= {0, 255}
    assert edges[:, :, 0].sum() > 0 and edges[40:, 40:].sum() == 0, "edges only where the circle is"
    passed = preprocess(circle_image(), "none", 128, 128, tmp_path)
    assert passed.size == (128, 128)
    lines = np.asarray(preprocess(circle_image(), "lineart_standard", 64, 64, tmp_path))
    assert lines.shape == (64, 64, 3)
    with pytest.raises(PreprocessorError) as missing:
        preprocess(circle_image(), "hed", 64, 64, tmp_path)
    message = str(missing.value)
    assert "ControlNetHED.pth" in message and "lllyasviel/Annotators" in message
    assert str(tmp_path / "ControlNet" / "annotators") in message


def test_inpaint_with_controlnet_keeps_pixels_outside_the_mask(engine, tiny_controlnet):
    from ldm_ui.requests import InpaintRequest

    init = Image.new("RGB", (64, 64), (200, 200, 40))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 31), fill=255)
    controlled, info = run(engine, [unit()], cls=InpaintRequest, init_image=init, mask=mask, strength=0.8,
                           mask_blur_px=0)
    plain, _ = run(engine, cls=InpaintRequest, init_image=init, mask=mask, strength=0.8, mask_blur_px=0)
    assert "ControlNet 0" in info
    assert np.abs(controlled[:32, :32] - plain[:32, :32]).max() > 5, "the ControlNet had no effect in the mask"
    outside = np.asarray(init, dtype=np.int16)[40:, 40:]
    assert np.abs(controlled[40:, 40:] - outside).max() <= 2, "pixels outside the mask must stay"


def test_img2img_with_controlnet_as_the_first_job(app_config, tiny_controlnet):
    """The summary reads the steps run from the pipeline; a fresh engine's first job being ControlNet must work."""
    from ldm_ui.engine.engine import Engine

    engine = Engine(app_config).start()
    try:
        request = Img2ImgRequest(prompt="x", steps=4, seed=1, init_image=Image.new("RGB", (64, 64), "white"),
                                 strength=0.5, controlnets=(unit(),))
        finished = engine.generate(request, timeout=120)
    finally:
        engine.shutdown()
    assert finished.result.steps_run == 2
