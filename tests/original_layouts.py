"""Write diffusers pipelines back into the original single-file layouts the official converters produce, for tests.

Our own mapping, written from the two layouts' module structure (the inverse of what diffusers' single-file loader
reads): SD2's OpenCLIP text encoder under cond_stage_model.model. with fused q/k/v, SDXL's two encoders under
conditioner.embedders.0/1., and SD3's MMDiT under model.diffusion_model.joint_blocks with its CLIP encoders under
text_encoders.clip_l/clip_g.transformer.
"""

from __future__ import annotations

import torch

from ldm_layout import unet_to_ldm, vae_to_ldm

SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT_1 = "conditioner.embedders.0.transformer."
SDXL_TEXT_2 = "conditioner.embedders.1.model."
MMDIT = "model.diffusion_model."

_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}


def _text_state(text_encoder) -> dict[str, torch.Tensor]:
    """The encoder's weights with the 'text_model.' wrapper, whichever way transformers nests them."""
    return {(k if k.startswith(("text_model.", "text_projection")) else "text_model." + k): v
            for k, v in text_encoder.state_dict().items()}


def open_clip_to_ldm(text_encoder, prefix: str) -> dict[str, torch.Tensor]:
    """OpenCLIP's layout: every layer the encoder has (the official SD2 converter writes 23 of ViT-H's 24)."""
    state = _text_state(text_encoder)
    out = {prefix + "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["text_model.final_layer_norm.weight"],
           prefix + "ln_final.bias": state["text_model.final_layer_norm.bias"]}
    if "text_projection.weight" in state:
        out[prefix + "text_projection"] = state["text_projection.weight"].T
    for layer in range(text_encoder.config.num_hidden_layers):
        source, target = f"text_model.encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for old, new in _OPEN_CLIP_LAYER.items():
            for kind in ("weight", "bias"):
                out[f"{target}{new}.{kind}"] = state[f"{source}{old}.{kind}"]
        for kind in ("weight", "bias"):
            out[f"{target}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{source}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
    return out


def hf_clip_to_prefix(text_encoder, prefix: str, with_projection: bool = True) -> dict[str, torch.Tensor]:
    return {prefix + k: v for k, v in _text_state(text_encoder).items()
            if with_projection or not k.startswith("text_projection")}


def contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in state.items()}


def sd2_pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    return contiguous({**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae), **open_clip_to_ldm(pipe.text_encoder, SD2_TEXT)})


def sdxl_pipeline_to_ldm(pipe) -> dict[str, torch.Tensor]:
    return contiguous({**unet_to_ldm(pipe.unet), **vae_to_ldm(pipe.vae),
                       **hf_clip_to_prefix(pipe.text_encoder, SDXL_TEXT_1, with_projection=False),
                       **open_clip_to_ldm(pipe.text_encoder_2, SDXL_TEXT_2)})


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    """diffusers orders the final adaLN's outputs (scale, shift), the original (shift, scale)."""
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def mmdit_to_original(transformer) -> dict[str, torch.Tensor]:
    state = transformer.state_dict()
    layers = transformer.config.num_layers
    out = {"pos_embed": state["pos_embed.pos_embed"],
           "x_embedder.proj.weight": state["pos_embed.proj.weight"], "x_embedder.proj.bias": state["pos_embed.proj.bias"],
           "final_layer.linear.weight": state["proj_out.weight"], "final_layer.linear.bias": state["proj_out.bias"]}
    for ours, theirs in (("time_text_embed.timestep_embedder", "t_embedder.mlp"),
                         ("time_text_embed.text_embedder", "y_embedder.mlp")):
        for kind in ("weight", "bias"):
            out[f"{theirs}.0.{kind}"] = state[f"{ours}.linear_1.{kind}"]
            out[f"{theirs}.2.{kind}"] = state[f"{ours}.linear_2.{kind}"]
    for kind in ("weight", "bias"):
        out[f"context_embedder.{kind}"] = state[f"context_embedder.{kind}"]
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(state[f"norm_out.linear.{kind}"])
    for i in range(layers):
        ours, x, c = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        last = i == layers - 1
        for kind in ("weight", "bias"):
            out[f"{x}attn.qkv.{kind}"] = torch.cat([state[f"{ours}attn.to_{p}.{kind}"] for p in "qkv"])
            out[f"{c}attn.qkv.{kind}"] = torch.cat([state[f"{ours}attn.add_{p}_proj.{kind}"] for p in "qkv"])
            out[f"{x}attn.proj.{kind}"] = state[f"{ours}attn.to_out.0.{kind}"]
            out[f"{x}adaLN_modulation.1.{kind}"] = state[f"{ours}norm1.linear.{kind}"]
            context_norm = state[f"{ours}norm1_context.linear.{kind}"]
            out[f"{c}adaLN_modulation.1.{kind}"] = _swap_halves(context_norm) if last else context_norm
            out[f"{x}mlp.fc1.{kind}"] = state[f"{ours}ff.net.0.proj.{kind}"]
            out[f"{x}mlp.fc2.{kind}"] = state[f"{ours}ff.net.2.{kind}"]
            if not last:
                out[f"{c}attn.proj.{kind}"] = state[f"{ours}attn.to_add_out.{kind}"]
                out[f"{c}mlp.fc1.{kind}"] = state[f"{ours}ff_context.net.0.proj.{kind}"]
                out[f"{c}mlp.fc2.{kind}"] = state[f"{ours}ff_context.net.2.{kind}"]
            if f"{ours}attn2.to_q.{kind}" in state:
                out[f"{x}attn2.qkv.{kind}"] = torch.cat([state[f"{ours}attn2.to_{p}.{kind}"] for p in "qkv"])
                out[f"{x}attn2.proj.{kind}"] = state[f"{ours}attn2.to_out.0.{kind}"]
        for ours_norm, theirs_norm in (("attn.norm_q", f"{x}attn.ln_q"), ("attn.norm_k", f"{x}attn.ln_k"),
                                       ("attn.norm_added_q", f"{c}attn.ln_q"), ("attn.norm_added_k", f"{c}attn.ln_k"),
                                       ("attn2.norm_q", f"{x}attn2.ln_q"), ("attn2.norm_k", f"{x}attn2.ln_k")):
            if f"{ours}{ours_norm}.weight" in state:
                out[f"{theirs_norm}.weight"] = state[f"{ours}{ours_norm}.weight"]
    return {MMDIT + k: v for k, v in out.items()}


def sd3_pipeline_to_original(pipe) -> dict[str, torch.Tensor]:
    """SD3 as sd3_medium_incl_clips.safetensors lays it out: MMDiT, VAE, and the two CLIP encoders (no T5)."""
    return contiguous({**mmdit_to_original(pipe.transformer), **vae_to_ldm(pipe.vae),
                       # SD3's CLIP-L projection is the identity, which the file leaves out
                       **hf_clip_to_prefix(pipe.text_encoder, "text_encoders.clip_l.transformer.", with_projection=False),
                       **hf_clip_to_prefix(pipe.text_encoder_2, "text_encoders.clip_g.transformer.")})


def flux_to_original(transformer, prefix: str = "model.diffusion_model.") -> dict[str, torch.Tensor]:
    """FLUX.1's transformer in Black Forest Labs' layout: fused q/k/v (and, in the single blocks, q/k/v + MLP in
    one linear1), modulation under *_mod.lin / modulation.lin, the final adaLN as (shift, scale)."""
    state = transformer.state_dict()
    out = {}

    def put(name: str, key: str) -> None:
        for kind in ("weight", "bias"):
            if f"{key}.{kind}" in state:
                out[f"{name}.{kind}"] = state[f"{key}.{kind}"]

    embed = "time_text_embed."
    for original, ours in (("time_in", "timestep_embedder"), ("vector_in", "text_embedder"),
                           ("guidance_in", "guidance_embedder")):
        put(f"{original}.in_layer", f"{embed}{ours}.linear_1")
        put(f"{original}.out_layer", f"{embed}{ours}.linear_2")
    put("txt_in", "context_embedder")
    put("img_in", "x_embedder")
    for i in range(transformer.config.num_layers):
        block, ours = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        put(block + "img_mod.lin", ours + "norm1.linear")
        put(block + "txt_mod.lin", ours + "norm1_context.linear")
        for kind in ("weight", "bias"):
            out[f"{block}img_attn.qkv.{kind}"] = torch.cat([state[f"{ours}attn.to_{p}.{kind}"] for p in "qkv"])
            out[f"{block}txt_attn.qkv.{kind}"] = torch.cat([state[f"{ours}attn.add_{p}_proj.{kind}"] for p in "qkv"])
        for side, (q, k) in (("img", ("norm_q", "norm_k")), ("txt", ("norm_added_q", "norm_added_k"))):
            out[f"{block}{side}_attn.norm.query_norm.scale"] = state[f"{ours}attn.{q}.weight"]
            out[f"{block}{side}_attn.norm.key_norm.scale"] = state[f"{ours}attn.{k}.weight"]
        put(block + "img_mlp.0", ours + "ff.net.0.proj")
        put(block + "img_mlp.2", ours + "ff.net.2")
        put(block + "txt_mlp.0", ours + "ff_context.net.0.proj")
        put(block + "txt_mlp.2", ours + "ff_context.net.2")
        put(block + "img_attn.proj", ours + "attn.to_out.0")
        put(block + "txt_attn.proj", ours + "attn.to_add_out")
    for i in range(transformer.config.num_single_layers):
        block, ours = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        put(block + "modulation.lin", ours + "norm.linear")
        for kind in ("weight", "bias"):
            out[f"{block}linear1.{kind}"] = torch.cat([state[f"{ours}attn.to_{p}.{kind}"] for p in "qkv"]
                                                      + [state[f"{ours}proj_mlp.{kind}"]])
        out[f"{block}norm.query_norm.scale"] = state[f"{ours}attn.norm_q.weight"]
        out[f"{block}norm.key_norm.scale"] = state[f"{ours}attn.norm_k.weight"]
        put(block + "linear2", ours + "proj_out")
    put("final_layer.linear", "proj_out")
    for kind in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(state[f"norm_out.linear.{kind}"])
    return contiguous({prefix + k: v for k, v in out.items()})
