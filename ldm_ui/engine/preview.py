"""Latent -> RGB previews: a linear approximation per latent family, a full VAE decode, or (the default) whichever
of the two suits this model at this latent size."""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image

# Published linear latent->RGB factors (rows: latent channels, columns: R, G, B) for scaled latents.
SD15_LATENT_RGB = (
    [[0.3512, 0.2297, 0.3227],
     [0.3250, 0.4974, 0.2350],
     [-0.2829, 0.1762, 0.2721],
     [-0.2120, -0.2616, -0.7177]],
    [0.0, 0.0, 0.0],
)
SDXL_LATENT_RGB = (
    [[0.3651, 0.4232, 0.4341],
     [-0.2533, -0.0042, 0.1068],
     [0.1076, 0.1111, -0.0362],
     [-0.3165, -0.2492, -0.2188]],
    [0.1084, -0.0175, -0.0011],
)


class LinearPreview:
    """rgb = latent @ weight + bias, in [-1, 1]; costs one tiny matmul per preview."""

    def __init__(self, weight, bias):
        self.weight = torch.as_tensor(weight, dtype=torch.float32)
        self.bias = torch.as_tensor(bias, dtype=torch.float32)

    def __call__(self, latents: torch.Tensor) -> list[Image.Image]:
        x = latents.detach().to("cpu", torch.float32)  # (B, C, h, w)
        rgb = torch.einsum("bchw,cr->bhwr", x, self.weight) + self.bias
        return tensor_to_pils(rgb)

    @classmethod
    def fit(cls, codec, generator_seed: int = 0, pixel_size: int = 64) -> LinearPreview:
        """Least-squares fit of Cx3 factors plus bias from VAE encodes (`codec`: a VaeCodec) of random colored
        blocks, taken as the pipeline sees latents: (mean - shift) * scaling (SD3 and Flux VAEs shift)."""
        rng = np.random.default_rng(generator_seed)
        scale = codec.downscale
        size = max(pixel_size, scale * 8)
        cells = size // scale
        blocks = rng.uniform(-1, 1, size=(8, 3, cells // 2, cells // 2)).astype(np.float32)
        images = torch.from_numpy(blocks).repeat_interleave(2 * scale, -1).repeat_interleave(2 * scale, -2)
        latents = codec.encode_pixels(images).float().cpu()
        pooled = torch.nn.functional.avg_pool2d(images, scale)  # pixels averaged over each latent cell
        x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        y = pooled.permute(0, 2, 3, 1).reshape(-1, 3)
        x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
        solution = torch.linalg.lstsq(x1, y).solution
        return cls(solution[:-1], solution[-1])


class VaePreview:
    """Full VAE decode of the first image of the batch (the one the preview shows): exact, and as slow as a
    final decode of one image. `codec`: the model's VaeCodec, so previews follow its NaN policy and devices."""

    def __init__(self, codec):
        self.codec = codec

    def __call__(self, latents: torch.Tensor) -> list[Image.Image]:
        images = self.codec.decode_pixels(latents[:1])
        return tensor_to_pils(images.permute(0, 2, 3, 1))


# A full decode is the preview when the VAE's decoder parameters x latent cells stay under this: the demo model's
# decoder (0.6 M parameters) up to 16x16 latent cells (128 px: 30 ms a decode on one CPU thread, 10 ms at its
# native 8x8, where the approx preview is an 8x8 mosaic); an SD VAE (49 M) even at 8x8 cells is far above it.
FULL_PREVIEW_MAX_COST = 2e8
# ...and the full decodes may take at most this share of the time since the first preview; in between, the last
# decode is shown again (on the demo model a decode costs about as much as a step).
FULL_PREVIEW_TIME_SHARE = 0.15


def full_decode_cost(vae, latents: torch.Tensor) -> float:
    """Decoder parameters x latent cells: the decode's work grows with both."""
    decoder = sum(p.numel() for p in vae.decoder.parameters())
    return float(decoder) * latents.shape[-1] * latents.shape[-2]


class AutoPreview:
    """The default preview method, made per denoising call: a full decode where it is cheap (a small VAE on a small
    latent), the linear approximation otherwise. `model`: the LoadedModel, read at each call so a VAE switched in
    between is the one used."""

    def __init__(self, model):
        self.model = model
        self.first_call: float | None = None
        self.decode_seconds = 0.0
        self.last: list[Image.Image] | None = None

    def uses_full_decode(self, latents: torch.Tensor) -> bool:
        return full_decode_cost(self.model.full_preview.codec.vae, latents) <= FULL_PREVIEW_MAX_COST

    def __call__(self, latents: torch.Tensor) -> list[Image.Image]:
        if not self.uses_full_decode(latents):
            return self.model.approx_preview(latents)
        began = time.perf_counter()
        self.first_call = began if self.first_call is None else self.first_call
        if self.last is not None and self.decode_seconds > FULL_PREVIEW_TIME_SHARE * (began - self.first_call):
            return self.last
        self.last = self.model.full_preview(latents)
        self.decode_seconds += time.perf_counter() - began
        return self.last


def tensor_to_pils(rgb_bhwc: torch.Tensor) -> list[Image.Image]:
    array = ((rgb_bhwc.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return [Image.fromarray(a) for a in array]


def linear_preview_for(family: str, codec) -> LinearPreview:
    """Published factors for the 4-channel SD latents; any other latent family (the demo's, SD3's and Flux's
    16 channels) is fitted against its own VAE (through the codec, so shifted latents too) when the model loads."""
    vae = codec.vae
    if family in ("sd1", "sd2") and vae.config.latent_channels == 4:
        return LinearPreview(*SD15_LATENT_RGB)
    if family == "sdxl" and vae.config.latent_channels == 4:
        return LinearPreview(*SDXL_LATENT_RGB)
    return LinearPreview.fit(codec)
