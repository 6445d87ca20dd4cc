"""Tiny random-weight pipelines of each checkpoint family, saved as diffusers folders, for single-file tests.

Each keeps its family's structure (which encoders, where attention sits, channel counts of the latents) at toy
widths. The two CLIP encoders of SDXL and SD3 get different widths, as in the real models: diffusers tells them
apart by width. `family_configs` turns such a folder into the JSON-only config folder ldm-ui ships per family.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ldm_ui.engine.clip_vocab import save_clip_tokenizer
from tiny_models import build_tiny_sd1_layout


def clip_tokenizer(cache_dir: Path, pad_token: str):
    from transformers import CLIPTokenizer

    folder = Path(cache_dir) / f"tokenizer-{'bang' if pad_token == '!' else 'eot'}"
    if not (folder / "vocab.json").is_file():
        save_clip_tokenizer(folder, cache_dir, pad_token=pad_token)
    return CLIPTokenizer.from_pretrained(folder)


def _clip(hidden: int, layers: int, act: str, with_projection: bool = False, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=4, max_position_embeddings=77,
                            projection_dim=projection or hidden, hidden_act=act, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=0)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _vae(latent_channels: int = 4, **changes):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=latent_channels, norm_num_groups=32,
                         layers_per_block=1, block_out_channels=(32, 32, 32, 32),
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         **changes)


def _ddim(prediction_type: str = "epsilon"):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


def build_sd1(folder: Path, cache_dir: Path, in_channels: int = 4, seed: int = 0):
    from diffusers import StableDiffusionInpaintPipeline

    clip_tokenizer(cache_dir, "<|endoftext|>")
    pipe = build_tiny_sd1_layout(folder, Path(cache_dir) / "tokenizer-eot", seed=seed, in_channels=in_channels)
    if in_channels == 9:  # an inpainting model: saved under the pipeline that feeds mask and masked image
        pipe = StableDiffusionInpaintPipeline.from_pipe(pipe)
        pipe.save_pretrained(folder)
    return pipe


def build_sd2(folder: Path, cache_dir: Path, text_layers: int, prediction_type: str = "v_prediction",
              in_channels: int = 4, seed: int = 0):
    """SD2.x: OpenCLIP-style encoder (gelu, '!' padding), linear projections in the UNet's attention."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64, 64, 64), norm_num_groups=32, cross_attention_dim=64,
        attention_head_dim=(2, 4, 4, 4), use_linear_projection=True, upcast_attention=True,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    )
    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    pipe = cls(vae=_vae(scaling_factor=0.18215), text_encoder=_clip(64, text_layers, "gelu"),
               tokenizer=clip_tokenizer(cache_dir, "!"), unet=unet, scheduler=_ddim(prediction_type),
               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return pipe


def build_sdxl(folder: Path, cache_dir: Path, seed: int = 0):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    text_encoder, text_encoder_2 = _clip(32, 2, "quick_gelu"), _clip(48, 3, "gelu", with_projection=True)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 64),
        norm_num_groups=32, cross_attention_dim=32 + 48, attention_head_dim=(2, 4, 4),
        transformer_layers_per_block=(1, 2, 2), use_linear_projection=True,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 48,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(vae=_vae(scaling_factor=0.13025), text_encoder=text_encoder,
                                     text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(cache_dir, "<|endoftext|>"),
                                     tokenizer_2=clip_tokenizer(cache_dir, "!"), unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return pipe


def build_sd3(folder: Path, cache_dir: Path, seed: int = 0, qk_norm: str | None = None, dual_attention_layers=()):
    """SD3's MMDiT at toy size: 16-channel latents, a shifted VAE, CLIP-L (identity projection) and CLIP-G."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    text_encoder, text_encoder_2 = _clip(32, 2, "quick_gelu", True), _clip(48, 2, "gelu", True, projection=16)
    with torch.no_grad():  # SD3's CLIP-L projection is the identity; its single files leave it out
        text_encoder.text_projection.weight.copy_(torch.eye(32))
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=8,
        num_attention_heads=4, joint_attention_dim=96, caption_projection_dim=32, pooled_projection_dim=32 + 16,
        pos_embed_max_size=16, qk_norm=qk_norm, dual_attention_layers=tuple(dual_attention_layers),
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=text_encoder, tokenizer=clip_tokenizer(cache_dir, "<|endoftext|>"),
        text_encoder_2=text_encoder_2, tokenizer_2=clip_tokenizer(cache_dir, "!"),
        text_encoder_3=None, tokenizer_3=None,
    )
    pipe.save_pretrained(folder)
    return pipe


def family_configs(reference: Path, root: Path, variant: str) -> Path:
    """root/<variant>/: the reference folder's JSON files only (configs, model index, tokenizer settings)."""
    target = Path(root) / variant
    shutil.rmtree(target, ignore_errors=True)
    for file in Path(reference).rglob("*.json"):
        if file.name in ("vocab.json", "tokenizer.json"):  # built at load time from the open_clip package
            continue
        destination = target / file.relative_to(reference)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
    return target


# ---- T5 (Flux, PixArt-Sigma): a SentencePiece-style Unigram tokenizer made here, since none can be downloaded

T5_WORDS = ("a red green blue circle square cat dog house tree sky photo of the on in with and bright dark small "
            "large portrait landscape painting night day").split()


def t5_tokenizer(cache_dir: Path):
    """A T5 tokenizer (Unigram over '▁'-prefixed pieces, <pad>=0, </s>=1, <unk>=2, 100 sentinels, as T5 has) built
    from a vocabulary list with the `tokenizers` library and saved once (tokenizer.json, as a hub folder holds)."""
    from transformers import T5TokenizerFast

    folder = Path(cache_dir) / "tokenizer-t5"
    if not (folder / "tokenizer.json").is_file():
        pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
        pieces += [("▁" + word, -3.0 - i / 100) for i, word in enumerate(T5_WORDS)]
        pieces += [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
        pieces += [("▁" + c, -7.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
        tokenizer = T5TokenizerFast(vocab=pieces + [(f"<extra_id_{i}>", 0.0) for i in reversed(range(100))],
                                    extra_ids=100, model_max_length=512)
        tokenizer.save_pretrained(folder)
    return T5TokenizerFast.from_pretrained(folder)


def _t5(vocab_size: int, d_model: int = 32):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=d_model, d_kv=8, d_ff=64, num_layers=2,
                                   num_heads=4, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                                   is_encoder_decoder=False, use_cache=False))


def build_flux(folder: Path, cache_dir: Path, seed: int = 0, guidance_embeds: bool = True):
    """FLUX.1 at toy size: double- and single-stream blocks, CLIP-L pooled + T5 sequence, a 16-channel shifted VAE,
    flow matching with resolution-dependent shift; `guidance_embeds` as in FLUX.1-dev (schnell has none)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    tokenizer_2 = t5_tokenizer(cache_dir)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, guidance_embeds=guidance_embeds,
                                         axes_dims_rope=(4, 6, 6))
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(
        transformer=transformer, scheduler=scheduler,
        vae=_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=_clip(32, 2, "quick_gelu"), tokenizer=clip_tokenizer(cache_dir, "<|endoftext|>"),
        text_encoder_2=_t5(len(tokenizer_2)), tokenizer_2=tokenizer_2,
    )
    pipe.save_pretrained(folder)
    return pipe


def build_pixart_sigma(folder: Path, cache_dir: Path, seed: int = 0):
    """PixArt-Sigma at toy size: a DiT with cross-attention to T5, learned sigma (8 output channels for a 4-channel
    latent), an SDXL-style VAE and DPM-Solver++ over a linear beta schedule."""
    from diffusers import DPMSolverMultistepScheduler, PixArtSigmaPipeline, PixArtTransformer2DModel

    torch.manual_seed(seed)
    tokenizer = t5_tokenizer(cache_dir)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=4, in_channels=4,
        out_channels=8, cross_attention_dim=32, caption_channels=32, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, use_additional_conditions=False, interpolation_scale=None)
    scheduler = DPMSolverMultistepScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02,
                                            prediction_type="epsilon", num_train_timesteps=1000)
    pipe = PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=_t5(len(tokenizer)), vae=_vae(scaling_factor=0.13025),
                               transformer=transformer, scheduler=scheduler)
    pipe.save_pretrained(folder)
    return pipe
