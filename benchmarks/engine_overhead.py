"""Engine overhead: the same SD1.5-sized components through the engine vs a bare diffusers call.

Random weights (nothing to download), 256x256, 4 steps, CPU. The two paths alternate in one run; the script
prints the median time ratio (target <= 1.03) and the approx-preview cost as a share of sampling time
(target <= 2%). Run: python benchmarks/engine_overhead.py [--rounds 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def sd15_sized_pipeline():
    """SD1.5's UNet/VAE/text-encoder shapes with random weights; a character tokenizer stands in for CLIP's."""
    import torch
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from tiny_models import write_char_tokenizer

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp()) / "tokenizer"
    write_char_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4, layers_per_block=2,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                                num_hidden_layers=12, num_attention_heads=12,
                                                max_position_embeddings=77))
    scheduler = EulerAncestralDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    import torch

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.engine.models import ModelEntry
    from ldm_ui.engine.samplers import make_scheduler
    from ldm_ui.requests import Txt2ImgRequest

    torch.set_num_threads(args.threads)
    print(f"building SD1.5-sized random components ({args.threads} threads)...", flush=True)
    pipe = sd15_sized_pipeline()
    workdir = Path(tempfile.mkdtemp())
    engine = Engine(AppConfig(models_dir=workdir / "models", outputs_dir=workdir / "outputs",
                              cache_dir=workdir / "cache", preview_method="approx", preview_every_n_steps=1))
    engine.models.current = engine.models._prepare(ModelEntry("sd15-random", "diffusers", str(workdir)), pipe, "sd1")
    engine.start()
    prompt, negative = "a photo of a red fox in the snow", "blurry"
    request = Txt2ImgRequest(prompt=prompt, negative_prompt=negative, sampler="Euler a", steps=args.steps,
                             cfg_scale=7.0, width=args.size, height=args.size, seed=1, model="sd15-random")

    def bare() -> float:
        pipe.scheduler = make_scheduler("Euler a", engine.models.current.base_scheduler_config)
        began = time.perf_counter()
        pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=args.steps, guidance_scale=7.0,
             width=args.size, height=args.size, generator=torch.Generator("cpu").manual_seed(1), output_type="pil")
        return time.perf_counter() - began

    preview_shares = []

    def through_engine() -> float:
        began = time.perf_counter()
        finished = engine.generate(request)
        elapsed = time.perf_counter() - began
        preview_shares.append(finished.result.preview_s / finished.result.sampling_s)
        return elapsed

    bare(), through_engine()  # warm-up: first-call allocations and lazy imports
    bare_times, engine_times = [], []
    for round_index in range(args.rounds):
        for name, run, times in (("bare", bare, bare_times), ("engine", through_engine, engine_times)):
            times.append(run())
            print(f"round {round_index + 1}: {name:6s} {times[-1]:.3f} s", flush=True)
    engine.shutdown()
    ratio = statistics.median(engine_times) / statistics.median(bare_times)
    share = statistics.median(preview_shares)
    print(f"\nmedian bare diffusers call: {statistics.median(bare_times):.3f} s")
    print(f"median through the engine:  {statistics.median(engine_times):.3f} s (approx preview every step, "
          f"infotext, PNG save)")
    print(f"engine / bare ratio: {ratio:.3f}  (target <= 1.03)")
    print(f"preview cost share of sampling time: {share * 100:.2f}%  (target <= 2%)")


if __name__ == "__main__":
    main()
