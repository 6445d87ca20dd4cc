"""Latent -> RGB previews: a linear approximation per latent family, or a full VAE decode."""

from __future__ import annotations

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
