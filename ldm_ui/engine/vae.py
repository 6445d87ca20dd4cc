"""The one place the VAE encodes and decodes: one NaN policy, one tiling rule, the right device under offload.

NaN policy: SD1.x/SDXL VAEs can overflow in fp16 and give NaN. A VAE whose config says `force_upcast` (SDXL),
or any VAE under --no-half-vae, runs in fp32 from the start; otherwise a NaN result is redone once in fp32 and
the VAE then stays in fp32 *for this codec's calls only*: it is cast back to its dtype after each call, so the
pipelines that share it (img2img's own encode, ControlNet) never meet a VAE of another dtype than the U-Net's.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import contextmanager
from typing import Iterator

import torch
from PIL import Image

log = logging.getLogger(__name__)

TILE_FROM_PX = 1024 * 1024  # tile at and above 1024x1024 pixels: keeps the decode within a gaming GPU's memory


_devices: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> its execution device


def execution_device(pipe) -> torch.device:
    """Where the pipeline's modules run: under CPU offload the weights sit on the CPU (or on `meta`) between
    uses, so the parameters' device is the wrong answer; diffusers knows the right one. Asking diffusers walks
    every module's hooks (about 2 ms on the demo model, several times per image), so the answer is kept per
    pipeline until `forget_execution_device` (after the engine moves or re-offloads it)."""
    try:
        return _devices[pipe]
    except (KeyError, TypeError):
        device = pipe._execution_device
    try:
        _devices[pipe] = device
    except TypeError:  # an object that cannot be weakly referenced: ask every time
        pass
    return device


def forget_execution_device(pipe) -> None:
    _devices.pop(pipe, None)


class VaeCodec:
    """Encode pixels to scaled latents and decode them back, for one loaded pipeline."""

    def __init__(self, pipe, upcast: bool = False):
        self.pipe = pipe
        config = pipe.vae.config
        self.scaling_factor = float(config.scaling_factor)
        self.shift_factor = float(getattr(config, "shift_factor", None) or 0.0)
        # fp32 from the first call: asked for (--no-half-vae) or known to overflow in fp16 (the config says so)
        self.upcast = upcast or bool(getattr(config, "force_upcast", False))

    @property
    def vae(self):
        return self.pipe.vae

    @property
    def downscale(self) -> int:
        return int(self.pipe.vae_scale_factor)

    # ---- tiling

    def set_tiling(self, width: int, height: int) -> bool:
        """Tile for images of at least TILE_FROM_PX pixels; returns whether tiling is on."""
        tiled = width * height >= TILE_FROM_PX
        if hasattr(self.vae, "enable_tiling"):
            self.vae.enable_tiling() if tiled else self.vae.disable_tiling()
        return tiled

    # ---- the NaN policy

    @contextmanager
    def _in_fp32(self) -> Iterator[None]:
        vae, dtype = self.vae, self.vae.dtype
        if dtype == torch.float32:
            yield
            return
        vae.to(torch.float32)
        try:
            yield
        finally:
            vae.to(dtype)

    def _run(self, what: str, call, x: torch.Tensor) -> torch.Tensor:
        device = execution_device(self.pipe)
        with torch.no_grad():
            if not self.upcast:
                dtype = self.vae.dtype
                result = call(x.to(device, dtype))
                if dtype == torch.float32 or not torch.isnan(result).any():
                    return result
                log.warning("VAE %s gave NaN in %s; redoing it in fp32 (and from now on for this model)",
                            what, dtype)
                self.upcast = True
            with self._in_fp32():
                return call(x.to(device, torch.float32))

    # ---- tensors

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents: the posterior mean, so one image always gives one latent."""
        mean = self._run("encode", lambda x: self.vae.encode(x).latent_dist.mean, pixels)
        return ((mean.float() - self.shift_factor) * self.scaling_factor).to(self.vae.dtype)

    def decode_pixels(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> (B, 3, H, W) in about [-1, 1], as float32 on the execution device."""
        h, w = latents.shape[-2:]
        self.set_tiling(w * self.downscale, h * self.downscale)
        z = latents.float() / self.scaling_factor + self.shift_factor
        # one image at a time (as AUTOMATIC1111 decodes): a batch's decode peak is one image's, not batch-size
        # times it, which is what runs a 6-8 GB GPU out of memory at the end of a batch
        return torch.cat([self._run("decode", lambda x: self.vae.decode(x).sample, one).float()
                          for one in z.split(1)])

    # ---- images

    def encode(self, image: Image.Image) -> torch.Tensor:
        pixels = self.pipe.image_processor.preprocess(image.convert("RGB"))
        self.set_tiling(*image.size)
        return self.encode_pixels(pixels)

    def decode(self, latents: torch.Tensor) -> list[Image.Image]:
        return self.pipe.image_processor.postprocess(self.decode_pixels(latents), output_type="pil")
