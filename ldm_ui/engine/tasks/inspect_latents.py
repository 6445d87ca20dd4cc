"""The latent inspector's runner: what the VAE makes of an image (channels, sizes, reconstruction, PSNR).

It runs on the engine's worker like every other job, so it never races a generation for the VAE.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.latent_math import crop_to_multiple, psnr_db
from ldm_ui.requests import Finished, InspectLatentsRequest
from ldm_ui.results import ChannelStats, LatentInspection


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


def run(ctx: TaskContext) -> Finished:
    request: InspectLatentsRequest = ctx.request
    model = ctx.model
    vae = model.vae
    original = crop_to_multiple(request.image, vae.downscale)
    ctx.status(f"encoding {original.width}x{original.height} with the VAE…", 0, 2)
    latents = vae.encode(original)
    ctx.check_cancel()
    ctx.status("decoding the latent back to pixels…", 1, 2)
    reconstruction = vae.decode(latents)[0]
    channels, stats = channel_images(latents, vae.downscale)
    inspection = LatentInspection(
        original=original, reconstruction=reconstruction, channels=channels, channel_stats=stats,
        latent_size=(latents.shape[3], latents.shape[2]), latent_channels=latents.shape[1], downscale=vae.downscale,
        input_size=request.image.size, psnr_db=psnr_db(original, reconstruction), model=model.entry.name,
    )
    return Finished(outputs=[], result=inspection)
