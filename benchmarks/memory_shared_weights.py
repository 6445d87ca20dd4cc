"""Do img2img and inpaint reuse the loaded weights? Process RSS after txt2img, img2img and inpaint in turn.

Baseline in the same run: RSS right after the first txt2img. Prints each RSS, the ratio after all three tasks over
the baseline (target <= 1.05), and, for scale, the ratio a second copy of the weights would have given.

The model is a randomly initialised SD1.x-layout pipeline built once into .cache/bench-models/ (weights do not
matter for memory): `--scale 1` is full SD1.5 size (~1.07 B parameters, ~4.3 GB in fp32), the default 0.5 halves
every width (~0.26 B parameters, ~1 GB). `--model NAME` measures a model from the models folder instead.

Run: python benchmarks/memory_shared_weights.py [--scale 0.5] [--model demo-shapes]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

TARGET = 1.05


def build_random_sd(folder: Path, scale: float) -> None:
    """An SD1.x-shaped pipeline with every channel width times `scale`, random weights, saved as diffusers."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tiny_models import write_char_tokenizer

    def width(channels: int) -> int:
        return max(32, int(channels * scale) // 32 * 32)

    torch.manual_seed(0)
    write_char_tokenizer(folder.parent / f".{folder.name}-tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder.parent / f".{folder.name}-tokenizer")
    text_width = width(768)
    unet = UNet2DConditionModel(
        sample_size=64, block_out_channels=tuple(width(c) for c in (320, 640, 1280, 1280)),
        cross_attention_dim=text_width, attention_head_dim=8, layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=tuple(width(c) for c in (128, 256, 512, 512)), latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        sample_size=512, scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=text_width * 4, num_hidden_layers=12,
        num_attention_heads=12 if text_width % 12 == 0 else 8, max_position_embeddings=77,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                            safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(folder)


def rss_mb() -> float:
    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.5, help="channel width relative to SD1.5 (1 = full size)")
    parser.add_argument("--model", help="measure this model from the models folder instead of a random one")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    import torch
    from PIL import Image, ImageDraw

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import Img2ImgRequest, InpaintRequest, Txt2ImgRequest

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp())
    if args.model:
        config = AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache", default_model=args.model)
    else:
        models = ROOT / ".cache" / "bench-models"
        name = f"random-sd-x{args.scale:g}"
        if not (models / "diffusers" / name / "model_index.json").is_file():
            print(f"building {name} in {models} (once)...", flush=True)
            build_random_sd(models / "diffusers" / name, args.scale)
        config = AppConfig(models_dir=models, outputs_dir=work / "outputs", cache_dir=work / "cache",
                           default_model=name)
    engine = Engine(config).start()
    loaded = engine.switch_model(config.default_model)
    weights_mb = sum(p.numel() * p.element_size() for part in (loaded.pipe.unet, loaded.pipe.vae,
                                                               loaded.pipe.text_encoder)
                     for p in part.parameters()) / 2**20
    common = dict(prompt="a red circle on a blue background", steps=args.steps, seed=1, width=args.size,
                  height=args.size)
    image = Image.new("RGB", (args.size, args.size), (30, 60, 200))
    ImageDraw.Draw(image).ellipse((args.size // 4,) * 2 + (3 * args.size // 4,) * 2, fill=(220, 30, 30))
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).rectangle((args.size // 3,) * 2 + (2 * args.size // 3,) * 2, fill=255)

    began = time.perf_counter()
    engine.generate(Txt2ImgRequest(**common))
    rows = [("txt2img", rss_mb())]
    engine.generate(Img2ImgRequest(init_image=image, strength=0.75, **common))
    rows.append(("+ img2img", rss_mb()))
    engine.generate(InpaintRequest(init_image=image, mask=mask, strength=0.75, **common))
    rows.append(("+ inpaint", rss_mb()))
    engine.shutdown()

    baseline = rows[0][1]
    print(f"model {config.default_model}: {weights_mb:,.0f} MiB of UNet+VAE+text-encoder weights "
          f"({loaded.pipe.unet.dtype}); {args.size}x{args.size}, {args.steps} steps, "
          f"{time.perf_counter() - began:.0f} s")
    for label, rss in rows:
        print(f"  RSS after {label:<10} {rss:9,.0f} MiB   ratio {rss / baseline:.3f}")
    ratio = rows[-1][1] / baseline
    print(f"shared-weights ratio (RSS after txt2img+img2img+inpaint / after txt2img): {ratio:.3f} "
          f"(target <= {TARGET}); a second copy of the weights would give ~{(baseline + weights_mb) / baseline:.2f}")


if __name__ == "__main__":
    main()
