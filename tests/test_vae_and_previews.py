"""The one VAE codec (tiling rule, fp16 NaN policy) and live previews decoded from x0, not the noisy latent."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from diffusers.image_processor import VaeImageProcessor

from ldm_ui.engine.vae import TILE_FROM_PX, VaeCodec
from ldm_ui.requests import Preview, Txt2ImgRequest


class FakeVae:
    """Records every call; in fp16 its decode overflows to NaN, as SD/SDXL VAEs can."""

    def __init__(self, force_upcast: bool = False):
        self.config = SimpleNamespace(scaling_factor=0.5, shift_factor=None, force_upcast=force_upcast)
        self.dtype = torch.float16
        self.calls: list[str] = []
        self.decoded_batches: list[int] = []

    def to(self, dtype):
        self.calls.append(f"to {str(dtype).split('.')[-1]}")
        self.dtype = dtype
        return self

    def enable_tiling(self):
        self.calls.append("tiling on")

    def disable_tiling(self):
        self.calls.append("tiling off")

    def decode(self, z):
        self.calls.append(f"decode {str(z.dtype).split('.')[-1]}")
        assert z.dtype == self.dtype  # the input always matches the weights' dtype
        out = torch.zeros(z.shape[0], 3, z.shape[2] * 8, z.shape[3] * 8, dtype=z.dtype)
        return SimpleNamespace(sample=out.fill_(float("nan")) if self.dtype == torch.float16 else out)

    def encode(self, x):
        self.calls.append(f"encode {str(x.dtype).split('.')[-1]}")
        mean = torch.zeros(x.shape[0], 4, x.shape[2] // 8, x.shape[3] // 8, dtype=x.dtype)
        return SimpleNamespace(latent_dist=SimpleNamespace(mean=mean.fill_(float("nan")) if x.dtype == torch.float16
                                                           else mean))


def codec_for(vae: FakeVae, **kwargs) -> VaeCodec:
    pipe = SimpleNamespace(vae=vae, vae_scale_factor=8, image_processor=VaeImageProcessor(vae_scale_factor=8),
                           _execution_device=torch.device("cpu"))
    return VaeCodec(pipe, **kwargs)


@pytest.mark.parametrize("width,height,tiled", [(1024, 1024, True), (1016, 1024, False), (1024, 1032, True),
                                                (512, 512, False), (2048, 512, True)])
def test_tiling_from_1024x1024_pixels(width, height, tiled):
    vae = FakeVae()
    codec = codec_for(vae, upcast=True)
    codec.decode_pixels(torch.zeros(1, 4, height // 8, width // 8))
    assert vae.calls[0] == ("tiling on" if tiled else "tiling off")
    assert (width * height >= TILE_FROM_PX) == tiled


def test_a_batch_is_decoded_one_image_at_a_time_in_order():
    vae = FakeVae()
    codec = codec_for(vae, upcast=True)
    latents = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 4, 8, 8)
    vae.decode = lambda z: (vae.decoded_batches.append(z.shape[0]),
                            SimpleNamespace(sample=z[:, :3].repeat_interleave(8, 2).repeat_interleave(8, 3)))[1]
    images = codec.decode_pixels(latents)
    assert vae.decoded_batches == [1, 1, 1]  # the decode's memory peak is one image's
    assert images.shape == (3, 3, 64, 64)
    assert [float(images[i].mean()) for i in range(3)] == [i / vae.config.scaling_factor for i in range(3)]


def test_fp16_nan_decode_is_redone_in_fp32_and_the_shared_vae_keeps_its_dtype():
    vae = FakeVae()
    codec = codec_for(vae)
    images = codec.decode_pixels(torch.zeros(1, 4, 8, 8))
    assert torch.isfinite(images).all()
    assert vae.calls[1:] == ["decode float16", "to float32", "decode float32", "to float16"]
    assert vae.dtype == torch.float16  # img2img and ControlNet pipelines share this VAE with the fp16 U-Net
    # the model is known to overflow now: the next decode goes straight to fp32, with no wasted fp16 attempt
    vae.calls.clear()
    codec.decode_pixels(torch.zeros(1, 4, 8, 8))
    assert vae.calls[1:] == ["to float32", "decode float32", "to float16"]


def test_encode_follows_the_same_nan_policy():
    vae = FakeVae()
    codec = codec_for(vae)
    latents = codec.encode_pixels(torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(latents).all() and latents.dtype == torch.float16
    assert vae.calls == ["encode float16", "to float32", "encode float32", "to float16"]


def test_force_upcast_and_no_half_vae_never_try_fp16():
    for vae, codec in ((v := FakeVae(force_upcast=True), codec_for(v)), (w := FakeVae(), codec_for(w, upcast=True))):
        codec.decode_pixels(torch.zeros(1, 4, 8, 8))
        assert "decode float16" not in vae.calls and vae.dtype == torch.float16


def _record_steps(engine, method: str, steps: int = 6):
    seen = []
    engine.step_hooks.append(lambda info: seen.append((info.latents.clone(), info.x0.clone()
                                                       if info.x0 is not None else None)))
    try:
        job = engine.submit(Txt2ImgRequest(prompt="a red circle on a blue background", steps=steps, seed=3,
                                           sampler="Euler", preview_method=method, preview_every_n_steps=1))
        events = list(job.events(timeout=120))
    finally:
        engine.step_hooks.clear()
    return seen, [e for e in events if isinstance(e, Preview)]


@pytest.mark.parametrize("method", ["approx", "full"])
def test_previews_show_the_predicted_clean_latent(engine, method):
    seen, previews = _record_steps(engine, method)
    model = engine.models.current
    decode = model.approx_preview if method == "approx" else model.full_preview
    assert len(previews) == len(seen) == 6
    for (latents, x0), preview in zip(seen, previews):
        assert x0 is not None, "the sampler did not report its x0"
        assert np.array_equal(np.asarray(preview.image), np.asarray(decode(x0)[0]))
    latents0, _ = seen[0]
    assert not np.array_equal(np.asarray(previews[0].image), np.asarray(decode(latents0)[0]))


DEMO_DIR = Path(__file__).resolve().parent.parent / "models" / "diffusers" / "demo-shapes"


@pytest.mark.skipif(not (DEMO_DIR / "model_index.json").is_file(), reason="the built-in demo model is not here")
def test_on_a_trained_model_x0_is_already_near_the_result_when_the_latent_is_still_noisy(tmp_path):
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine

    engine = Engine(AppConfig(models_dir=DEMO_DIR.parent.parent, outputs_dir=tmp_path / "outputs",
                              cache_dir=tmp_path / "cache", default_model="demo-shapes")).start()
    try:
        seen, previews = _record_steps(engine, "approx", steps=10)
    finally:
        engine.shutdown()
    final = seen[-1][0]
    latents, x0 = seen[1]  # after 2 of 10 steps
    assert (x0 - final).norm() < 0.5 * (latents - final).norm()


@pytest.mark.skipif(not (DEMO_DIR / "model_index.json").is_file(), reason="the built-in demo model is not here")
def test_the_default_preview_of_the_demo_model_is_a_full_decode_and_a_large_latent_gets_the_cheap_one(tmp_path):
    """Issue 14 item 10: the demo's 8x8 latent previewed by the linear map is an 8x8 mosaic; a full decode of
    it is cheap, so the default (auto) decodes it. At 512 px (64x64 cells) the default is the linear map."""
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine

    config = AppConfig(models_dir=DEMO_DIR.parent.parent, outputs_dir=tmp_path / "outputs",
                       cache_dir=tmp_path / "cache", default_model="demo-shapes")
    assert config.preview_method == "auto"
    engine = Engine(config).start()
    try:
        model = engine.models.current or engine.switch_model("demo-shapes")
        seen, previews = _record_steps(engine, None, steps=4)
        _, x0 = seen[0]
        first = np.asarray(previews[0].image)
        assert first.shape == (64, 64, 3), "the preview is the full-size picture, not the latent's 8x8 cells"
        assert np.array_equal(first, np.asarray(model.full_preview(x0)[0]))
        mosaic = np.asarray(model.approx_preview(x0)[0].resize((64, 64), 0))
        assert np.abs(first.astype(int) - mosaic).mean() > 1

        engine.step_hooks.append(lambda info: seen.append((info.latents, info.x0.clone())))
        seen.clear()
        job = engine.submit(Txt2ImgRequest(prompt="a red circle on a blue background", steps=1, seed=3,
                                           width=512, height=512, sampler="Euler", preview_every_n_steps=1))
        large = [e for e in job.events(timeout=300) if isinstance(e, Preview)]
        _, x0 = seen[0]
        assert large[0].image.size == (64, 64), "a 64x64-cell latent gets the linear preview, one pixel a cell"
        assert np.array_equal(np.asarray(large[0].image), np.asarray(model.approx_preview(x0)[0]))
    finally:
        engine.step_hooks.clear()
        engine.shutdown()
