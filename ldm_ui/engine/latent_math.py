"""Latent-space arithmetic shared by interpolation and the latent inspector: mixing, easing, cropping, PSNR."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

PARALLEL_DOT = 0.9995  # closer than this, slerp's sin(omega) is tiny: fall back to lerp, which is then equivalent


def ease(t: float, easing: str) -> float:
    """Map the linear frame position t in [0, 1] to the mixing weight; ease-in-out lingers near both ends."""
    if easing == "ease-in-out":
        t = (1.0 - math.cos(math.pi * t)) / 2.0
    return min(1.0, max(0.0, t))


def frame_positions(frames: int, easing: str) -> list[float]:
    """Mixing weights for `frames` frames; the first is exactly 0 and the last exactly 1."""
    return [0.0] + [ease(i / (frames - 1), easing) for i in range(1, frames - 1)] + [1.0]


def as_float64(x: torch.Tensor) -> torch.Tensor:
    """float64 on the CPU: MPS has no float64, and a latent is small enough to mix anywhere."""
    return x.detach().to("cpu", torch.float64)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Straight-line mix. Of two independent Gaussian noises it shrinks the norm (by 1/sqrt(2) at t=0.5)."""
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    mixed = (1.0 - t) * as_float64(a) + t * as_float64(b)
    return mixed.to(a.device, a.dtype)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical mix along the great circle through a and b (each flattened as one vector).

    Two Gaussian noises of one shape have nearly equal norms and are nearly orthogonal; slerp keeps the norm in
    between theirs at every t, so each frame's noise has the variance the sampler expects.
    """
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    a64, b64 = as_float64(a).flatten(), as_float64(b).flatten()
    dot = torch.dot(a64, b64) / (a64.norm() * b64.norm())
    if not torch.isfinite(dot) or abs(float(dot)) > PARALLEL_DOT:
        return lerp(a, b, t)
    omega = torch.arccos(dot.clamp(-1.0, 1.0))
    sin_omega = torch.sin(omega)
    mixed = (torch.sin((1.0 - t) * omega) / sin_omega) * a64 + (torch.sin(t * omega) / sin_omega) * b64
    return mixed.reshape(a.shape).to(a.device, a.dtype)


def mix(a: torch.Tensor, b: torch.Tensor, t: float, how: str) -> torch.Tensor:
    return slerp(a, b, t) if how == "slerp" else lerp(a, b, t)


def crop_to_multiple(image: Image.Image, multiple: int) -> Image.Image:
    """Centre-crop so both sides are multiples of `multiple` (a VAE needs whole latent cells)."""
    image = image.convert("RGB")
    w, h = image.size
    nw, nh = max(multiple, w - w % multiple), max(multiple, h - h % multiple)
    if (nw, nh) == (w, h):
        return image
    if nw > w or nh > h:
        return image.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (w - nw) // 2, (h - nh) // 2
    return image.crop((left, top, left + nw, top + nh))


def crop_and_resize(image: Image.Image, width: int, height: int) -> Image.Image:
    """Fill width x height: scale to cover it, then centre-crop the overflow (keeps the aspect ratio)."""
    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           Image.Resampling.LANCZOS)
    left, top = (resized.width - width) // 2, (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def psnr_db(original: Image.Image, reconstruction: Image.Image) -> float:
    """Peak signal-to-noise ratio of two 8-bit RGB images of one size, in dB (inf when identical)."""
    a = np.asarray(original.convert("RGB"), dtype=np.float64)
    b = np.asarray(reconstruction.convert("RGB"), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of one size, got {a.shape} and {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
