"""Latents in the layout the VAE, the previews and the step hooks take: (batch, channels, rows, columns).

Flux's pipelines hold their latents packed, 2x2 latent cells per token: (batch, rows/2 * columns/2, 4 * channels).
They come back packed from `output_type="latent"` and in the step callback; the pipeline's own `_unpack_latents`
(a static method of every Flux pipeline) puts them back, given the image size in pixels.
"""

from __future__ import annotations


def is_packed(latents) -> bool:
    return latents is not None and latents.ndim == 3


def unpacked(pipe, latents, width: int | None, height: int | None):
    """`latents` as (B, C, h, w); unchanged when they are not packed."""
    if not is_packed(latents):
        return latents
    unpack = getattr(type(pipe), "_unpack_latents", None)
    if unpack is None or not width or not height:
        raise ValueError(f"{type(pipe).__name__} returned packed latents {tuple(latents.shape)} and no image size "
                         "to unpack them with")
    return unpack(latents, height, width, pipe.vae_scale_factor)
