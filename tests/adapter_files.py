"""Adapter files for the tiny models: LoRAs in the two layouts users bring (diffusers/peft and kohya/A1111) and a
small ControlNet with an effect."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _linear_layers(module: torch.nn.Module, targets: tuple[str, ...]) -> list[tuple[str, torch.nn.Linear]]:
    return [(name, layer) for name, layer in module.named_modules()
            if isinstance(layer, torch.nn.Linear) and name.endswith(targets)]


def random_lora(unet, text_encoder=None, rank: int = 4, scale: float = 0.5, seed: int = 0):
    """{(prefix, module path): (down, up)} with down (rank x in) and up (out x rank), seeded."""
    generator = torch.Generator().manual_seed(seed)
    pairs = {}
    for prefix, module, targets in (("unet", unet, UNET_TARGETS), ("text_encoder", text_encoder, TEXT_TARGETS)):
        if module is None:
            continue
        for name, layer in _linear_layers(module, targets):
            down = torch.randn(rank, layer.in_features, generator=generator) * scale
            up = torch.randn(layer.out_features, rank, generator=generator) * scale
            pairs[(prefix, name)] = (down, up)
    return pairs


def write_diffusers_lora(path: Path, pairs) -> Path:
    tensors = {}
    for (prefix, name), (down, up) in pairs.items():
        tensors[f"{prefix}.{name}.lora_A.weight"] = down.contiguous()
        tensors[f"{prefix}.{name}.lora_B.weight"] = up.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


def write_kohya_lora(path: Path, pairs) -> Path:
    """kohya-ss / A1111 names: lora_unet_<path with underscores>.lora_down.weight, .lora_up.weight, .alpha"""
    tensors = {}
    for (prefix, name), (down, up) in pairs.items():
        head = "lora_unet_" if prefix == "unet" else "lora_te_"
        key = head + name.replace(".", "_")
        tensors[f"{key}.lora_down.weight"] = down.contiguous()
        tensors[f"{key}.lora_up.weight"] = up.contiguous()
        tensors[f"{key}.alpha"] = torch.tensor(float(down.shape[0]))  # alpha = rank: scale 1
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"ss_network_module": "networks.lora"})
    return path


def build_tiny_controlnet(unet_folder: Path, out: Path, seed: int = 0) -> Path:
    """A ControlNet shaped for a tiny U-Net; its zero convolutions get random weights so it has an effect."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    if out.is_dir():
        return out
    unet = UNet2DConditionModel.from_pretrained(unet_folder, subfolder="unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 16, 16))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]:
            block.weight.copy_(torch.randn(block.weight.shape, generator=generator) * 0.3)
    controlnet.save_pretrained(out)
    return out
