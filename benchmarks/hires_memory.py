"""Peak memory of a hires fix: txt2img with a 2x hires pass against the same txt2img without one, on the CPU.

Each run is its own process, so its peak RSS (ru_maxrss) is that job's alone: the baseline is the plain first pass
measured in the same invocation. Prints both peaks, the ratio (target < 1.6) and the working memory above the
weights. The model is the random SD1.x-layout pipeline of memory_shared_weights.py (`--scale 1` is full SD1.5
size; the default 0.5 halves every width), or `--model NAME` from the models folder.

Run: python benchmarks/hires_memory.py [--scale 0.5] [--size 512] [--upscaler Latent] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

TARGET = 1.6


def config_for(args):
    from ldm_ui.config import AppConfig

    work = Path(tempfile.mkdtemp())
    if args.model:
        return AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache", default_model=args.model)
    from memory_shared_weights import build_random_sd

    models = ROOT / ".cache" / "bench-models"
    name = f"random-sd-x{args.scale:g}"
    if not (models / "diffusers" / name / "model_index.json").is_file():
        print(f"building {name} in {models} (once)...", flush=True)
        build_random_sd(models / "diffusers" / name, args.scale)
    return AppConfig(models_dir=models, outputs_dir=work / "outputs", cache_dir=work / "cache", default_model=name)


def child(args) -> None:
    """One job in this process; prints its peak RSS and the weights' size as JSON."""
    import torch

    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import HiresFix, Txt2ImgRequest

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    config = config_for(args)
    engine = Engine(config).start()
    loaded = engine.switch_model(config.default_model)
    weights = sum(p.numel() * p.element_size() for part in (loaded.pipe.unet, loaded.pipe.vae,
                                                            loaded.pipe.text_encoder) for p in part.parameters())
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    hires = HiresFix(upscaler=args.upscaler, scale=2, denoising_strength=0.5) if args.child == "hires" else None
    began = time.perf_counter()
    engine.generate(Txt2ImgRequest(prompt="a red circle on a blue background", steps=args.steps, seed=1,
                                   width=args.size, height=args.size, hires=hires))
    seconds = time.perf_counter() - began
    engine.shutdown()
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "after_load_mb": after_load, "weights_mb": weights / 2**20, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=0.5, help="channel width relative to SD1.5 (1 = full size)")
    parser.add_argument("--model", help="measure this model from the models folder instead of a random one")
    parser.add_argument("--size", type=int, default=512, help="first-pass side in pixels (multiple of 8)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--upscaler", default="Latent")
    parser.add_argument("--child", choices=("plain", "hires"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    config_for(args)  # build the random model once, before the measured processes
    results = {}
    for kind in ("plain", "hires"):
        command = [sys.executable, __file__, "--child", kind, "--size", str(args.size), "--steps", str(args.steps),
                   "--upscaler", args.upscaler, "--scale", str(args.scale)] + (["--model", args.model] if args.model
                                                                               else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[kind] = json.loads(output.strip().splitlines()[-1])
    plain, hires = results["plain"], results["hires"]
    ratio = hires["peak_mb"] / plain["peak_mb"]
    print(f"{args.size}x{args.size} first pass, 2x hires ({args.upscaler}) to {2 * args.size}x{2 * args.size}, "
          f"{args.steps} steps, weights {plain['weights_mb']:,.0f} MiB")
    print(f"  peak RSS, txt2img alone:       {plain['peak_mb']:9,.0f} MiB  ({plain['seconds']:.0f} s)")
    print(f"  peak RSS, txt2img + hires 2x:  {hires['peak_mb']:9,.0f} MiB  ({hires['seconds']:.0f} s)")
    print(f"  working memory above the loaded model: {plain['peak_mb'] - plain['after_load_mb']:,.0f} MiB -> "
          f"{hires['peak_mb'] - hires['after_load_mb']:,.0f} MiB")
    print(f"hires peak / first-pass peak: {ratio:.3f} (target < {TARGET})")


if __name__ == "__main__":
    main()
