"""The Extras upscale task: single images and batches, by factor or to size, one or two upscalers, saved with an
infotext under outputs/extras; no diffusion model is loaded for it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, PngImagePlugin

from ldm_ui.config import AppConfig
from ldm_ui.metadata import parse_infotext, read_png_parameters
from ldm_ui.requests import Failed, RequestError, UpscaleRequest
from tiny_upscalers import esrgan_state_dict, save_safetensors


def scene(size=(40, 32)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((8, 6, 30, 26), fill=(220, 30, 30))
    return image


@pytest.fixture
def extras_engine(tmp_path):
    from ldm_ui.engine.engine import Engine

    models = tmp_path / "models"
    save_safetensors(esrgan_state_dict(scale=2), models / "ESRGAN" / "tiny-esrgan-2x.safetensors")
    # no diffusion model at all: the upscale task must not need one
    engine = Engine(AppConfig(models_dir=models, outputs_dir=tmp_path / "outputs", default_model="none")).start()
    yield engine
    engine.shutdown()


def test_one_image_by_factor_is_saved_under_extras_with_its_infotext_kept(extras_engine):
    source = scene()
    source.info["parameters"] = "a red circle\nNegative prompt: blur\nSteps: 20, Sampler: Euler, Seed: 42, Size: 40x32"
    finished = extras_engine.generate(UpscaleRequest(images=(source,), upscaler="Lanczos", scale=2.5))
    output = finished.outputs[0]
    assert output.image.size == (100, 80) and output.seed == 42
    assert "/extras/" in output.path.replace("\\", "/")
    with Image.open(output.path) as saved:
        info = parse_infotext(read_png_parameters(saved))
    assert (info.prompt, info.negative_prompt, info.settings["Seed"]) == ("a red circle", "blur", "42")
    assert info.settings["Postprocess upscale by"] == "2.5" and info.settings["Postprocess upscaler"] == "Lanczos"
    assert extras_engine.models.current is None  # no diffusion model was loaded
    assert "Upscaled to 100x80 with Lanczos" in finished.summary


def test_to_size_crops_to_fit_and_a_learned_model_runs(extras_engine):
    finished = extras_engine.generate(UpscaleRequest(images=(scene(),), upscaler="tiny-esrgan-2x",
                                                     resize_width=96, resize_height=48))
    assert finished.images[0].size == (96, 48)
    assert parse_infotext(finished.outputs[0].infotext).settings["Postprocess upscale to"] == "96x48"


def test_two_upscalers_are_blended_by_the_visibility(extras_engine):
    source = scene()
    finished = extras_engine.generate(UpscaleRequest(images=(source,), upscaler="Nearest", upscaler_2="Lanczos",
                                                     upscaler_2_visibility=0.25))
    expected = Image.blend(source.resize((80, 64), Image.Resampling.NEAREST),
                           source.resize((80, 64), Image.Resampling.LANCZOS), 0.25)
    np.testing.assert_array_equal(np.asarray(finished.images[0]), np.asarray(expected))
    settings = parse_infotext(finished.outputs[0].infotext).settings
    assert (settings["Postprocess upscaler 2"], settings["Postprocess upscaler 2 visibility"]) == ("Lanczos", "0.25")


def test_a_batch_of_uploads_and_a_folder_inside_the_outputs(extras_engine):
    batch = extras_engine.generate(UpscaleRequest(images=(scene(), scene((24, 24))), upscaler="Nearest"))
    assert [image.size for image in batch.images] == [(80, 64), (48, 48)]
    folder = extras_engine.config.outputs_dir / "txt2img" / "2026-12-01"
    folder.mkdir(parents=True)
    for index in range(3):
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"circle {index}\nSteps: 4, Sampler: Euler, Seed: {index}, Size: 40x32")
        scene().save(folder / f"0000{index}-{index}.png", pnginfo=info)
    from_folder = extras_engine.generate(UpscaleRequest(folder="txt2img/2026-12-01", upscaler="Lanczos"))
    assert [o.seed for o in from_folder.outputs] == [0, 1, 2]
    assert all(o.image.size == (80, 64) for o in from_folder.outputs)
    for bad in ("../outside", "/etc"):
        failed = list(extras_engine.submit(UpscaleRequest(folder=bad)).events())[-1]
        assert isinstance(failed, Failed) and repr(bad) in failed.message


def test_bad_input_is_refused_with_the_limit_or_the_list(extras_engine):
    with pytest.raises(RequestError, match="upscale factor must be between 1 and 4, got 8"):
        UpscaleRequest(images=(scene(),), scale=8)
    with pytest.raises(RequestError, match="at most 4096 px"):
        UpscaleRequest(images=(scene((2048, 1100)),), scale=2.5)
    with pytest.raises(RequestError, match="either images .* or a folder"):
        UpscaleRequest()
    failed = list(extras_engine.submit(UpscaleRequest(images=(scene(),), upscaler="4x-foo")).events())[-1]
    assert isinstance(failed, Failed)
    assert failed.message == "unknown upscaler '4x-foo'; choose one of: Lanczos, Nearest, tiny-esrgan-2x"
    assert extras_engine.generate(UpscaleRequest(images=(scene(),))).images[0].size == (80, 64)
