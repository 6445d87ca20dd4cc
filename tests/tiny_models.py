"""Tiny random Stable-Diffusion-layout models built from configs, for fast offline tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.!?'-:()<>_"


def write_char_tokenizer(folder: Path) -> None:
    """A CLIP tokenizer whose vocabulary is single characters: enough to encode any test prompt."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {}
    for ch in TOKEN_CHARS:
        vocab.setdefault(ch, len(vocab))
    for ch in TOKEN_CHARS:
        vocab.setdefault(ch + "</w>", len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    raw = folder / "raw"
    raw.mkdir(exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps(vocab))
    (raw / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"), pad_token="<|endoftext|>", model_max_length=77)
    tokenizer.save_pretrained(folder)


def build_tiny_sd(folder: Path, seed: int = 0, in_channels: int = 4):
    """Save a tiny SD1.x-shaped pipeline (64 px native, f=8 VAE) as a diffusers folder and return it."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tokenizer_dir = folder.parent / f".{folder.name}-tokenizer"
    write_char_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=77, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return pipe


def build_tiny_sd1_layout(folder: Path, tokenizer_folder: Path, seed: int = 0, in_channels: int = 4):
    """A tiny pipeline with SD1.x's block structure (4 levels, cross-attention in the first 3, CLIP's 49,408-token
    vocabulary and the real CLIP tokenizer), small enough for CPU tests, saved as a diffusers folder.

    Its sizes respect what a single-file loader cannot read from shapes and takes from SD1.x: 8 attention heads in
    the UNet, 12 in the text encoder, group norms of 32 channels. Returns the pipeline.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_folder)
    unet = UNet2DConditionModel(
        sample_size=64, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 32, 64, 64), norm_num_groups=32, cross_attention_dim=48, attention_head_dim=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=512, norm_num_groups=32, layers_per_block=1,
        block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=12,
        max_position_embeddings=77, projection_dim=48, hidden_act="quick_gelu",
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))
    # the same scheduler settings the shipped SD1.x config carries
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return pipe


def build_tiny_sdxl(folder: Path, seed: int = 0):
    """Save a tiny SDXL-shaped pipeline (two text encoders, pooled text + time ids) as a diffusers folder."""
    from diffusers import (
        AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    tokenizer_dir = folder.parent / f".{folder.name}-tokenizer"
    write_char_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir)
    tokenizer_2 = CLIPTokenizer.from_pretrained(tokenizer_dir)
    tokenizer_2.pad_token = "!"  # SDXL's second tokenizer pads with "!" (id 0 in OpenCLIP), not with EOS
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 24, cross_attention_dim=32 + 24,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025,
    )
    common = dict(vocab_size=len(tokenizer), intermediate_size=37, num_attention_heads=4, max_position_embeddings=77,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=32, num_hidden_layers=3, projection_dim=32, **common))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=24, num_hidden_layers=3,
                                                                projection_dim=24, **common))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return pipe


def build_tiny_sdxl_refiner(folder: Path, seed: int = 1):
    """Save a tiny SDXL-refiner-shaped pipeline as a diffusers folder: only the second (OpenCLIP-like) text
    encoder, a U-Net conditioned on its states and on 5 time ids (sizes, crop, aesthetic score), the same
    f=8 VAE layout as build_tiny_sdxl; StableDiffusionXLImg2ImgPipeline with requires_aesthetics_score=True."""
    from diffusers import (
        AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    tokenizer_dir = folder.parent / f".{folder.name}-tokenizer"
    write_char_tokenizer(tokenizer_dir)
    tokenizer_2 = CLIPTokenizer.from_pretrained(tokenizer_dir)
    tokenizer_2.pad_token = "!"
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        norm_num_groups=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=5 * 8 + 24, cross_attention_dim=24,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=64, norm_num_groups=8,
        block_out_channels=(8, 16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.13025,
    )
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        hidden_size=24, num_hidden_layers=3, projection_dim=24, vocab_size=len(tokenizer_2), intermediate_size=37,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer_2.bos_token_id,
        eos_token_id=tokenizer_2.eos_token_id, pad_token_id=tokenizer_2.pad_token_id,
    ))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=text_encoder_2,
                                            tokenizer=None, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    pipe.save_pretrained(folder)
    return pipe


def build_refiner_models(root: Path) -> Path:
    """A models folder with tiny-sdxl (a base), tiny-refiner (an SDXL refiner) and tiny-sd (SD1-shaped, which a
    refiner must refuse); returns `root`."""
    build_tiny_sdxl(root / "diffusers" / "tiny-sdxl")
    build_tiny_sdxl_refiner(root / "diffusers" / "tiny-refiner")
    build_tiny_sd(root / "diffusers" / "tiny-sd")
    return root
