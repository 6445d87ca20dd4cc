"""Train the demo's learned 2x upscaler "demo-shapes-2x" and measure it against Lanczos.

    python -m ldm_ui.demo.train_upscaler [--out models/RealESRGAN/demo-shapes-2x.safetensors] [--steps 3000]
    python -m ldm_ui.demo.train_upscaler --measure-only

The network is Real-ESRGAN's compact architecture (SRVGGNetCompact) as spandrel defines it, small (16 features,
4 convolutions: about 12k parameters), so the app loads the file like any downloaded upscaler: spandrel
recognises it from its weights. The data are the demo scenes (data.py) drawn at 128 px, and the same scenes
box-downsampled to 64 px, which is exactly how the 64 px scenes the demo model learned from are made; training
takes random 32 px crops, mean squared error (what PSNR measures), Adam with a cosine schedule.

`measure` reports the PSNR of the 2x upscale of held-out scenes (other seeds than training) against their true
128 px drawing, for the model, Lanczos and bicubic. The shipped weights: the defaults below (3,000 steps,
seed 0); the figures are in models/RealESRGAN/README.md.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm_ui.demo import data

SCALE = 2
NUM_FEAT, NUM_CONV = 16, 4
CROP = 32  # low-resolution crop side
TRAIN_SEED, HELD_OUT_SEED = 0, 1_000_003


def pairs(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high): `count` demo scenes as (N, 3, 64, 64) and (N, 3, 128, 128) floats in [0, 1]."""
    rng = np.random.default_rng(seed)
    highs = [data.make_scene(rng, pixels=data.SIZE * SCALE).image for _ in range(count)]
    lows = [image.resize((data.SIZE, data.SIZE), Image.BOX) for image in highs]
    return to_tensor(lows), to_tensor(highs)


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in images]) / 255.0).permute(0, 3, 1, 2)


def new_model() -> torch.nn.Module:
    from spandrel.architectures.Compact import Compact

    return Compact(num_in_ch=3, num_out_ch=3, num_feat=NUM_FEAT, num_conv=NUM_CONV, upscale=SCALE)


def random_crops(low: torch.Tensor, high: torch.Tensor, batch: int, generator: torch.Generator):
    index = torch.randint(len(low), (batch,), generator=generator)
    top = torch.randint(data.SIZE - CROP + 1, (batch,), generator=generator)
    left = torch.randint(data.SIZE - CROP + 1, (batch,), generator=generator)
    lows = torch.stack([low[i, :, t:t + CROP, l:l + CROP] for i, t, l in zip(index, top, left)])
    highs = torch.stack([high[i, :, SCALE * t:SCALE * (t + CROP), SCALE * l:SCALE * (l + CROP)]
                         for i, t, l in zip(index, top, left)])
    return lows, highs


def train(steps: int, seed: int = TRAIN_SEED, batch: int = 16, scenes: int = 2000, log_every: int = 250):
    torch.manual_seed(seed)
    low, high = pairs(scenes, seed)
    model = new_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    began = time.perf_counter()
    for step in range(1, steps + 1):
        lows, highs = random_crops(low, high, batch, generator)
        loss = torch.nn.functional.mse_loss(model(lows), highs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps}  MSE {loss.item():.6f}  {time.perf_counter() - began:.0f} s", flush=True)
    return model.eval()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def measure(upscale, count: int = 200, seed: int = HELD_OUT_SEED) -> dict[str, float]:
    """Mean PSNR (dB) of the 2x upscales of `count` held-out scenes: `upscale` (a PIL image -> PIL image function,
    e.g. the app's LearnedUpscaler), Lanczos and bicubic."""
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {"model": [], "lanczos": [], "bicubic": []}
    size = (data.SIZE * SCALE, data.SIZE * SCALE)
    for _ in range(count):
        high = data.make_scene(rng, pixels=size[0]).image
        low = high.resize((data.SIZE, data.SIZE), Image.BOX)
        truth = np.asarray(high)
        scores["model"].append(psnr(np.asarray(upscale(low)), truth))
        scores["lanczos"].append(psnr(np.asarray(low.resize(size, Image.LANCZOS)), truth))
        scores["bicubic"].append(psnr(np.asarray(low.resize(size, Image.BICUBIC)), truth))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def load_upscaler(path: Path):
    """The saved file as the app loads it (spandrel, through engine/upscalers.py)."""
    import spandrel

    from ldm_ui.engine.upscalers import LearnedUpscaler, read_weights

    descriptor = spandrel.ModelLoader().load_from_state_dict(read_weights(path)).eval()
    return LearnedUpscaler(path.stem, descriptor, torch.device("cpu"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("models/RealESRGAN/demo-shapes-2x.safetensors"))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=TRAIN_SEED)
    parser.add_argument("--measure-only", action="store_true", help="measure the file at --out, do not train")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.measure_only:
        from safetensors.torch import save_file

        model = train(args.steps, args.seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
        print(f"saved {args.out}")
    figures = measure(load_upscaler(args.out))
    print("mean PSNR of 200 held-out scenes upscaled 2x (64 -> 128 px), against their true drawing:")
    for name, value in figures.items():
        print(f"  {name:8s} {value:.2f} dB")


if __name__ == "__main__":
    main()
