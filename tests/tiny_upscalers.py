"""Small random-weight upscalers in real architectures' layouts, which spandrel recognises from the weights."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def esrgan_state_dict(scale: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    return ESRGAN(num_filters=8, num_blocks=1, scale=scale).state_dict()


def swinir_state_dict(scale: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(seed)
    return SwinIR(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4, mlp_ratio=2, upscale=scale,
                  upsampler="pixelshuffledirect").state_dict()


def save_safetensors(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(path))
    return path


def save_pth(state_dict: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, path)
    return path
