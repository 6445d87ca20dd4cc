"""Measure the demo model: ``python -m ldm_ui.demo.evaluate``.

Generates every caption combination (168 prompts, fixed seeds, 20 steps) through the diffusers pipeline loaded
from the model folder, judges each image from its pixels (judge.py) and prints: both colors right, shape right,
the VAE's held-out reconstruction PSNR and the time per image. Writes a 4x4 grid of 16 samples as a PNG.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm_ui.demo.scoring import GUIDANCE, STEPS, evaluate, generate, prompts, summary

DEFAULT_MODEL = Path("models/diffusers/demo-shapes")


def seconds_per_image(pipe, steps: int = STEPS, repeats: int = 5) -> float:
    """Median wall time of one 64x64 image at ``steps`` steps, batch 1 (after one warm-up run)."""
    case = prompts()[0]
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        generate(pipe, [case], steps=steps)
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def save_grid(images: np.ndarray, path: Path, scale: int = 4) -> None:
    """A 4x4 grid of the first 16 images, upscaled nearest-neighbour so the pixels stay visible."""
    rows = [np.concatenate(list(images[r * 4:(r + 1) * 4]), axis=1) for r in range(4)]
    grid = Image.fromarray(np.concatenate(rows, axis=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="diffusers folder of the demo model")
    parser.add_argument("--grid", type=Path, default=Path(".cache/demo-eval/grid.png"))
    parser.add_argument("--guidance", type=float, default=GUIDANCE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from diffusers import DiffusionPipeline

    from ldm_ui.demo.train import TrainConfig, heldout_images, vae_psnr

    pipe = DiffusionPipeline.from_pretrained(args.model)
    result = evaluate(pipe, prompts(), guidance=args.guidance)
    print(summary(result) + f" ({STEPS} steps, guidance {args.guidance})")
    wrong = [(c.prompt, v.color, v.shape, v.background) for c, v in zip(result["cases"], result["verdicts"])
             if (v.color, v.shape, v.background) != (c.color, c.shape, c.background)]
    for prompt, color, shape, background in wrong[:12]:
        print(f"  wrong: {prompt!r} -> judged {color} {shape} on {background}")
    print(f"VAE held-out PSNR: {vae_psnr(pipe.vae, heldout_images(TrainConfig())):.2f} dB")
    print(f"time per 64x64 image, {STEPS} steps, batch 1: {seconds_per_image(pipe):.3f} s "
          f"(torch threads: {torch.get_num_threads()})")
    # 16 samples spread over the combinations, for a person to look at
    pick = np.linspace(0, len(result["images"]) - 1, 16).round().astype(int)
    save_grid(result["images"][pick], args.grid)
    print(f"grid of 16 samples: {args.grid}; prompts, row by row:")
    for r in range(4):
        print("  " + " | ".join(result["cases"][i].prompt for i in pick[r * 4:(r + 1) * 4]))


if __name__ == "__main__":
    main()
