"""Half precision, the fp16 VAE overflow, memory flags on a machine without CUDA, and model switching memory.

CI has no GPU: `--dtype float16` runs every task with half-precision weights on the CPU, which exercises the
same dtype paths a gaming GPU takes.
"""

from __future__ import annotations

import logging
import weakref

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from adapter_files import build_tiny_controlnet, random_lora, write_kohya_lora
from ldm_ui.config import AppConfig, ConfigError, config_from_args
from ldm_ui.engine.engine import Engine
from ldm_ui.engine.models import ModelManager
from ldm_ui.requests import (
    ControlNetUnit, Img2ImgRequest, InpaintRequest, InspectLatentsRequest, InterpolateRequest, Preview,
    Txt2ImgRequest,
)
from tiny_models import build_tiny_sd


def scene() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 60, 220))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    return image


def overflow_in_fp16(vae) -> None:
    """Make a VAE that overflows in fp16 as SD/SDXL VAEs can: activations past 65504 right before a GroupNorm,
    which normalises the scale away in fp32 but sees inf (and makes NaN) in fp16. (The scaled weights themselves
    stay below fp16's maximum.)"""
    with torch.no_grad():
        vae.post_quant_conv.weight.mul_(3e4)
        vae.post_quant_conv.bias.mul_(3e4)
        vae.encoder.conv_in.weight.mul_(3e4)
        vae.encoder.conv_in.bias.mul_(3e4)


@pytest.fixture(scope="module")
def half_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("half")
    models = root / "models"
    build_tiny_sd(models / "diffusers" / "tiny")
    build_tiny_controlnet(models / "diffusers" / "tiny", models / "ControlNet" / "tiny-cn")
    from diffusers import StableDiffusionPipeline

    base = StableDiffusionPipeline.from_pretrained(models / "diffusers" / "tiny")
    write_kohya_lora(models / "Lora" / "style.safetensors", random_lora(base.unet, base.text_encoder, seed=1))
    config = AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny", dtype="float16")
    engine = Engine(config).start()
    engine.switch_model("tiny", timeout=120)
    overflow_in_fp16(engine.models.current.pipe.vae)
    yield engine
    engine.shutdown()


def finite_image(image: Image.Image) -> bool:
    array = np.asarray(image)
    return array.shape[-1] == 3 and array.std() > 0  # a NaN decode comes out as one flat color


def test_every_task_runs_in_half_precision_through_the_fp16_vae_overflow(half_engine):
    pipe = half_engine.models.current.pipe
    assert pipe.unet.dtype == torch.float16
    previews = {}
    for method in ("approx", "full"):
        job = half_engine.submit(Txt2ImgRequest(prompt="a red circle", steps=3, seed=1, preview_method=method))
        events = list(job.events(timeout=300))
        previews[method] = [e for e in events if isinstance(e, Preview)]
        assert finite_image(events[-1].outputs[0].image), method
    assert all(finite_image(p.image) for p in previews["full"])
    # the fp32 retry must not leave the shared VAE in fp32: img2img, inpaint and ControlNet share it with the
    # fp16 U-Net (before: "Input type (c10::Half) and bias type (float) should be the same" from here on)
    assert pipe.vae.dtype == torch.float16
    source = scene()
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 0, 31, 63), fill=255)
    for request in (
        Img2ImgRequest(prompt="a red circle", init_image=source, strength=0.6, steps=4, seed=2),
        InpaintRequest(prompt="a red circle", init_image=source, mask=mask, strength=0.8, steps=4, seed=3),
        Txt2ImgRequest(prompt="a red circle <lora:style:0.8>", steps=3, seed=4),
        Txt2ImgRequest(prompt="a red circle", steps=3, seed=5, controlnets=(
            ControlNetUnit(model="tiny-cn", image=source, preprocessor="canny"),)),
        Img2ImgRequest(prompt="a red circle", init_image=source, strength=0.6, steps=4, seed=6, controlnets=(
            ControlNetUnit(model="tiny-cn", image=source, preprocessor="canny"),)),
        InterpolateRequest(prompt="a red circle", prompt_b="a blue square", frames=2, steps=2, seed=7),
        InterpolateRequest(mode="images", prompt="", image_a=source, image_b=source.rotate(90), frames=3, steps=2),
    ):
        finished = half_engine.generate(request, timeout=300)
        assert finished.outputs and all(finite_image(o.image) for o in finished.outputs), type(request).__name__
        assert pipe.vae.dtype == torch.float16
    inspection = half_engine.generate(InspectLatentsRequest(image=source), timeout=300).result
    assert finite_image(inspection.reconstruction) and inspection.psnr_db > 0
    assert half_engine.models.current.vae.upcast  # it learnt that this VAE overflows: no more wasted fp16 tries


def test_no_half_vae_keeps_the_vae_in_fp32(app_config):
    app_config.dtype, app_config.no_half_vae = "float16", True
    engine = Engine(app_config).start()
    try:
        finished = engine.generate(Txt2ImgRequest(prompt="a red circle", steps=2, seed=1), timeout=300)
        pipe = engine.models.current.pipe
        assert pipe.vae.dtype == torch.float32 and pipe.unet.dtype == torch.float16
        assert finite_image(finished.images[0])
    finally:
        engine.shutdown()


@pytest.mark.parametrize("argv,message", [
    (["--dtype", "float8"], "--dtype must be one of auto, float16, bfloat16, float32, got 'float8'"),
])
def test_bad_dtype_is_refused_with_the_allowed_values(argv, message):
    with pytest.raises(ConfigError, match=message):
        config_from_args(argv)


def test_memory_flags_without_cuda_say_they_do_nothing_and_the_app_starts(app_config, caplog):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    app_config.medvram = True
    app_config.dtype = "float16"
    engine = Engine(app_config).start()
    try:
        with caplog.at_level(logging.WARNING):  # said when the device is first picked: at the first model load
            assert engine.generate(Txt2ImgRequest(prompt="a red circle", steps=1, seed=1), timeout=300).images
        assert "--medvram has no effect on cpu" in caplog.text
        assert "--dtype float16 on the CPU works but is slow" in caplog.text
    finally:
        engine.shutdown()


class RecordingManager(ModelManager):
    """Notes, when a pipeline starts loading, whether the previous model's weights are still alive."""

    def __init__(self, config):
        super().__init__(config)
        self.previous_alive_at_load: list[bool] = []
        self.watch: weakref.ref | None = None

    def _load_pipeline(self, entry, report):
        import gc

        gc.collect()
        self.previous_alive_at_load.append(self.watch is not None and self.watch() is not None)
        return super()._load_pipeline(entry, report)


def test_switching_models_frees_the_old_one_before_the_new_one_loads(app_config, models_dir):
    build_tiny_sd(models_dir / "diffusers" / "tiny-sd-b", seed=1)
    manager = RecordingManager(app_config)
    engine = Engine(app_config, models=manager).start()
    try:
        engine.switch_model("tiny-sd", timeout=120)
        manager.watch = weakref.ref(manager.current.pipe.unet)
        from ldm_ui.ui.app import _switch_model  # the model selector's handler

        _switch_model(engine, "tiny-sd-b", 0)
        assert manager.current.entry.name == "tiny-sd-b"
        assert manager.previous_alive_at_load[-1] is False, "the old U-Net was still in memory during the load"
    finally:
        engine.shutdown()
