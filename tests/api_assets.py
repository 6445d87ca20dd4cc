"""What the API tests put beside the models: a VAE for the demo model that decodes visibly brighter, a styles file,
and a tiny learned upscaler."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import torch
from PIL import Image

from ldm_ui.config import PROJECT_ROOT
from tiny_upscalers import esrgan_state_dict, save_safetensors

BRIGHT_VAE = "bright-demo"
TINY_UPSCALER = "tiny-esrgan-2x"


def add_api_assets(models: Path, root: Path) -> Path:
    """models/VAE/bright-demo (a diffusers folder), models/ESRGAN/tiny-esrgan-2x; returns a copy of styles.csv."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(PROJECT_ROOT / "models" / "diffusers" / "demo-shapes" / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.bias += 0.4  # every pixel lighter: its images are plainly another VAE's
    vae.save_pretrained(models / "VAE" / BRIGHT_VAE)
    save_safetensors(esrgan_state_dict(scale=2), models / "ESRGAN" / f"{TINY_UPSCALER}.safetensors")
    styles = root / "styles.csv"
    shutil.copy(PROJECT_ROOT / "styles.csv", styles)
    return styles


def decode(data: str) -> Image.Image:
    """An image from the API's base64 text (loaded, so its infotext can be read)."""
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    return image


def encode(image: Image.Image) -> str:
    """An image as the API takes it: base64 PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
