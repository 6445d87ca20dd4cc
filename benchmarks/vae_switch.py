"""How long a VAE switch takes against a model load, on an SD1.5-sized model (issue 19: target < 20%).

Baseline in the same run: loading the model itself through the engine (a LoadModelRequest from another model).
Then a VAE switch to a single-file VAE in the original layout (AutoencoderKL.from_single_file), and back to the
checkpoint's own (None). Prints the median of each and the ratios.

The model is benchmarks/memory_shared_weights.py's random SD1.x-layout pipeline in .cache/bench-models/
(`--scale 1` is full SD1.5 size, the default); the VAE file is its own VAE written in the LDM layout.

Run: python benchmarks/vae_switch.py [--scale 1] [--runs 3]
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
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGET = 0.20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="channel width relative to SD1.5 (1 = full size)")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from safetensors.torch import save_file

    from ldm_layout import vae_to_ldm
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import SetVaeRequest
    from memory_shared_weights import build_random_sd
    from tiny_models import build_tiny_sd

    models = ROOT / ".cache" / "bench-models"
    name = f"random-sd-x{args.scale:g}"
    if not (models / "diffusers" / name / "model_index.json").is_file():
        print(f"building {name} in {models} (once)...", flush=True)
        build_random_sd(models / "diffusers" / name, args.scale)
    if not (models / "diffusers" / "tiny-sd" / "model_index.json").is_file():
        build_tiny_sd(models / "diffusers" / "tiny-sd")
    vae_file = models / "VAE" / f"{name}.vae.safetensors"
    if not vae_file.is_file():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(models / "diffusers" / name / "vae")
        vae_file.parent.mkdir(parents=True, exist_ok=True)
        save_file({k.removeprefix("first_stage_model."): v.contiguous() for k, v in vae_to_ldm(vae).items()},
                  str(vae_file))
    work = Path(tempfile.mkdtemp())
    engine = Engine(AppConfig(models_dir=models, outputs_dir=work / "outputs", cache_dir=work / "cache",
                              default_model="tiny-sd")).start()

    def timed(action) -> float:
        began = time.perf_counter()
        action()
        return time.perf_counter() - began

    loads, switches, backs = [], [], []
    for _ in range(args.runs):
        engine.switch_model("tiny-sd")  # the VAE choice stays None between runs: the load is a plain load
        loads.append(timed(lambda: engine.switch_model(name)))
        switches.append(timed(lambda: engine.submit(SetVaeRequest(vae=vae_file.name, model=name)).wait()))
        backs.append(timed(lambda: engine.submit(SetVaeRequest(vae="None", model=name)).wait()))
    engine.shutdown()
    load, switch, back = (statistics.median(v) for v in (loads, switches, backs))
    print(f"model {name}: load {load:.2f} s (median of {args.runs}); VAE switch to a single file {switch:.2f} s "
          f"= {switch / load:.1%} of a load; back to the checkpoint's own {back:.3f} s = {back / load:.1%} "
          f"(target < {TARGET:.0%})")


if __name__ == "__main__":
    main()
