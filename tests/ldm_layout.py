"""Write a diffusers SD1.x-style pipeline back into the original LDM single-file layout, as checkpoints are shared.

Our own mapping, written for the tests from the two layouts' module structure: the UNet's down/up blocks become
numbered input/output blocks, the VAE's blocks its encoder.down / decoder.up lists (the decoder's in reverse), and
the text encoder moves under cond_stage_model.transformer.
"""

from __future__ import annotations

import torch

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
           "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename_parts(rest: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return rest


def unet_to_ldm(unet) -> dict[str, torch.Tensor]:
    config = unet.config
    per_level = config.layers_per_block
    out: dict[str, torch.Tensor] = {}
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}  # SDXL
    for key, tensor in unet.state_dict().items():
        parts = key.split(".")
        if ".".join(parts[:-1]) in fixed:
            new = fixed[".".join(parts[:-1])] + "." + parts[-1]
        elif parts[0] == "down_blocks":
            level, kind = int(parts[1]), parts[2]
            first = 1 + level * (per_level + 1)
            if kind == "resnets":
                new = f"input_blocks.{first + int(parts[3])}.0." + _rename_parts(".".join(parts[4:]), _RESNET)
            elif kind == "attentions":
                new = f"input_blocks.{first + int(parts[3])}.1." + ".".join(parts[4:])
            else:  # downsamplers.0.conv.*
                new = f"input_blocks.{first + per_level}.0.op." + parts[-1]
        elif parts[0] == "mid_block":
            if parts[1] == "resnets":
                new = f"middle_block.{2 * int(parts[2])}." + _rename_parts(".".join(parts[3:]), _RESNET)
            else:
                new = "middle_block.1." + ".".join(parts[3:])
        elif parts[0] == "up_blocks":
            level, kind = int(parts[1]), parts[2]
            first = level * (per_level + 1)
            has_attention = config.up_block_types[level].startswith("CrossAttn")
            if kind == "resnets":
                new = f"output_blocks.{first + int(parts[3])}.0." + _rename_parts(".".join(parts[4:]), _RESNET)
            elif kind == "attentions":
                new = f"output_blocks.{first + int(parts[3])}.1." + ".".join(parts[4:])
            else:  # upsamplers.0.conv.*: after the resnet, and after the attention when there is one
                new = f"output_blocks.{first + per_level}.{2 if has_attention else 1}.conv." + parts[-1]
        else:
            raise KeyError(f"no LDM name for UNet weight {key}")
        out["model.diffusion_model." + new] = tensor
    return out


def vae_to_ldm(vae) -> dict[str, torch.Tensor]:
    levels = len(vae.config.block_out_channels)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in vae.state_dict().items():
        parts = key.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            new = key
        elif parts[1] in ("conv_in", "conv_out"):
            new = key
        elif parts[1] == "conv_norm_out":
            new = f"{side}.norm_out.{parts[-1]}"
        elif parts[1] in ("down_blocks", "up_blocks"):
            level = int(parts[2]) if side == "encoder" else levels - 1 - int(parts[2])
            group = "down" if side == "encoder" else "up"
            if parts[3] == "resnets":
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.{group}.{level}.block.{parts[4]}.{rest}"
            else:  # downsamplers.0.conv / upsamplers.0.conv
                new = f"{side}.{group}.{level}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{parts[-1]}"
        elif parts[1] == "mid_block":
            if parts[2] == "resnets":
                rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
                new = f"{side}.mid.block_{int(parts[3]) + 1}.{rest}"
            else:  # attentions.0.<linear or norm>: LDM uses 1x1 convolutions for q, k, v and the output
                new = f"{side}.mid.attn_1." + _rename_parts(".".join(parts[4:]), _VAE_ATTENTION)
                if tensor.ndim == 2:
                    tensor = tensor[:, :, None, None]
        else:
            raise KeyError(f"no LDM name for VAE weight {key}")
        out["first_stage_model." + new] = tensor
    return out


def text_encoder_to_ldm(text_encoder) -> dict[str, torch.Tensor]:
    out = {}
    for key, tensor in text_encoder.state_dict().items():
        inner = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + inner] = tensor
    return out


def sd1_pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    """The whole pipeline's weights as one SD1.x single-file state dict (contiguous, ready for save_file)."""
    state = {**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **text_encoder_to_ldm(pipe.text_encoder)}
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


# ---- fake checkpoints: right names and shape relations at toy widths, for architecture detection

SD1_TEXT = "cond_stage_model.transformer.text_model."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT_1 = "conditioner.embedders.0.transformer.text_model."
SDXL_TEXT_2 = "conditioner.embedders.1.model."
_FAKE_LAYOUTS = {
    # UNet widths are multiples of 32 (group norm) and of each level's head count (8 / 5,10,20,20 / 5,10,20)
    "sd1": {"channels": [32, 32, 64, 64], "depths": [1, 1, 1, 0], "linear": False, "texts": [("hf", SD1_TEXT, 48)]},
    "sd2": {"channels": [160, 320, 640, 640], "depths": [1, 1, 1, 0], "linear": True,
            "texts": [("open", SD2_TEXT, 64)]},
    "sdxl": {"channels": [160, 320, 640], "depths": [0, 2, 3], "linear": True,
             "texts": [("hf", SDXL_TEXT_1, 48), ("open", SDXL_TEXT_2, 40)]},
}


def fake_ldm_tensors(family: str, in_channels: int = 4) -> dict[str, torch.Tensor]:
    """Zero int8 tensors named and shaped like an SD1.x/SD2.x/SDXL single file (2 layers per UNet level)."""
    layout = _FAKE_LAYOUTS[family]
    tensors: dict[str, torch.Tensor] = {}

    def put(name: str, *shape: int) -> None:
        tensors[name] = torch.zeros(shape, dtype=torch.int8)

    cross = sum(width for _, _, width in layout["texts"])

    def attention(prefix: str, channels: int, depth: int) -> None:
        put(prefix + "proj_in.weight", *((channels, channels) if layout["linear"] else (channels, channels, 1, 1)))
        for k in range(depth):
            put(f"{prefix}transformer_blocks.{k}.attn2.to_k.weight", channels, cross)

    unet = "model.diffusion_model."
    channels, depths = layout["channels"], layout["depths"]
    put(unet + "input_blocks.0.0.weight", channels[0], in_channels, 3, 3)
    index = 1
    for level, (width, depth) in enumerate(zip(channels, depths)):
        for _ in range(2):
            put(f"{unet}input_blocks.{index}.0.out_layers.3.weight", width, 1, 1, 1)
            if depth:
                attention(f"{unet}input_blocks.{index}.1.", width, depth)
            index += 1
        if level < len(channels) - 1:
            put(f"{unet}input_blocks.{index}.0.op.weight", width, 1, 1, 1)
            index += 1
    put(unet + "middle_block.0.in_layers.0.weight", channels[-1])
    attention(unet + "middle_block.1.", channels[-1], depths[-1] or 1)
    put(unet + "out.2.weight", 4, channels[0], 3, 3)
    if family == "sdxl":
        put(unet + "label_emb.0.0.weight", 4, 2816)
    vae = "first_stage_model."
    put(vae + "encoder.conv_in.weight", 32, 3, 3, 3)
    for level, width in enumerate([32, 64, 64, 64]):
        for block in range(2):
            put(f"{vae}encoder.down.{level}.block.{block}.conv2.weight", width, 1, 1, 1)
    put(vae + "decoder.conv_in.weight", 64, 4, 3, 3)
    put(vae + "decoder.conv_out.weight", 3, 32, 3, 3)
    for kind, prefix, width in layout["texts"]:
        if kind == "hf":
            put(prefix + "embeddings.token_embedding.weight", 49408, width)
            put(prefix + "embeddings.position_embedding.weight", 77, width)
            for layer in range(2):
                put(f"{prefix}encoder.layers.{layer}.mlp.fc1.weight", 4 * width, width)
        else:
            put(prefix + "token_embedding.weight", 49408, width)
            put(prefix + "positional_embedding", 77, width)
            put(prefix + "text_projection", width, width)
            for layer in range(4):
                put(f"{prefix}transformer.resblocks.{layer}.mlp.c_fc.weight", 4 * width, width)
    return tensors
