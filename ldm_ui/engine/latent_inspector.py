"""The latent inspector's runner: what the VAE makes of an image (channels, sizes, reconstruction, PSNR).

It runs on the engine's worker like every other job, so it never races a generation for the VAE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ldm_ui.engine.latent_math import crop_to_multiple, psnr_db, vae_encode
from ldm_ui.engine.tasks import TILING_THRESHOLD_PX, TaskContext, decode_latents
from ldm_ui.requests import Finished, InspectLatentsRequest, Progress


@dataclass(frozen=True)
class ChannelStats:
    minimum: float
    maximum: float
    mean: float
    std: float


@dataclass(frozen=True)
class LatentInspection:
    original: Image.Image  # the image as encoded (cropped to whole latent cells)
    reconstruction: Image.Image  # decode(encode(original))
    channels: list[Image.Image]  # one grayscale image per latent channel, min..max stretched to black..white
    channel_stats: list[ChannelStats]
    latent_size: tuple[int, int]  # (width, height) of the latent
    latent_channels: int
    downscale: int  # pixels per latent cell along each side
    input_size: tuple[int, int]  # the uploaded image's (width, height), before cropping
    psnr_db: float

    @property
    def size(self) -> tuple[int, int]:
        return self.original.size

    @property
    def pixel_values(self) -> int:
        return self.size[0] * self.size[1] * 3

    @property
    def latent_values(self) -> int:
        return self.latent_size[0] * self.latent_size[1] * self.latent_channels

    @property
    def compression(self) -> float:
        return self.pixel_values / self.latent_values


def channel_images(latents: torch.Tensor, upscale: int) -> tuple[list[Image.Image], list[ChannelStats]]:
    """Each channel of a (1, C, h, w) latent as a grayscale image, enlarged `upscale` times with hard edges."""
    images, stats = [], []
    for channel in latents[0].detach().float().cpu().numpy():
        low, high = float(channel.min()), float(channel.max())
        scaled = (channel - low) / (high - low) if high > low else np.zeros_like(channel)
        image = Image.fromarray(np.round(scaled * 255).astype(np.uint8), mode="L")
        images.append(image.resize((image.width * upscale, image.height * upscale), Image.Resampling.NEAREST))
        stats.append(ChannelStats(low, high, float(channel.mean()), float(channel.std())))
    return images, stats


def run_inspect_latents(ctx: TaskContext) -> Finished:
    request: InspectLatentsRequest = ctx.job.request
    model = ctx.model
    pipe = model.pipe
    factor = int(pipe.vae_scale_factor)
    original = crop_to_multiple(request.image, factor)
    if hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling() if original.width * original.height > TILING_THRESHOLD_PX else pipe.vae.disable_tiling()
    ctx.job.emit(Progress(step=0, steps=2, batch_index=0, batch_count=1, it_per_s=0.0, eta_s=0.0,
                          message=f"encoding {original.width}x{original.height} with the VAE…"))
    latents = vae_encode(pipe, original)
    ctx.check_cancel()
    ctx.job.emit(Progress(step=1, steps=2, batch_index=0, batch_count=1, it_per_s=0.0, eta_s=0.0,
                          message="decoding the latent back to pixels…"))
    reconstruction = decode_latents(model, pipe, latents)[0]
    channels, stats = channel_images(latents, factor)
    inspection = LatentInspection(
        original=original, reconstruction=reconstruction, channels=channels, channel_stats=stats,
        latent_size=(latents.shape[3], latents.shape[2]), latent_channels=latents.shape[1], downscale=factor,
        input_size=request.image.size, psnr_db=psnr_db(original, reconstruction),
    )
    return Finished(outputs=[], info={"inspection": inspection, "model": model.entry.name})
