"""Speed of an active LoRA against the base model, through the engine, on the built-in model (CPU).

The engine merges active LoRAs into the weights (engine/lora_fusion.py). In the same run, alternating, this
script times 20-step jobs of the demo model: without a LoRA, with the shipped demo-outline LoRA (merged, as the
engine runs it), and with the same LoRA left unmerged (diffusers' adapters as they are after set_adapters, the
engine's behaviour before merging). Prints medians and LoRA/base speed ratios (target: merged >= 0.95).
Run: python benchmarks/lora_speed.py [--runs 10]
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

TARGET = 0.95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.engine.lora import apply_loras, parse_lora_tags
    from ldm_ui.engine.lora_fusion import LoraFusion
    from ldm_ui.requests import Txt2ImgRequest

    work = Path(tempfile.mkdtemp())
    engine = Engine(AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache")).start()
    loaded = engine.switch_model("demo-shapes")
    pipe = loaded.pipe
    import torch

    torch.set_num_threads(loaded.cpu_threads or torch.get_num_threads())  # the pipeline runs as the engine does
    prompt = "a red circle on a blue background"

    def job(text: str) -> float:
        began = time.perf_counter()
        engine.generate(Txt2ImgRequest(prompt=text, steps=args.steps, seed=1, sampler="Euler a"))
        return time.perf_counter() - began

    def unmerged() -> float:
        # the same LoRA active but not merged: undo the merge the engine keeps while the LoRA repeats
        apply_loras(engine.config, pipe, parse_lora_tags(f"{prompt} <lora:demo-outline:1>")[1], fuse=False)
        began = time.perf_counter()
        pipe(prompt, num_inference_steps=args.steps, guidance_scale=7.0, output_type="pil")
        return time.perf_counter() - began

    def merged() -> float:
        with_lora = f"{prompt} <lora:demo-outline:1>"
        if not LoraFusion.of(pipe).merged:
            job(with_lora)  # the merge happens once, on the first job after a change: not timed
        return job(with_lora)

    def bare_base() -> float:
        apply_loras(engine.config, pipe, [])
        began = time.perf_counter()
        pipe(prompt, num_inference_steps=args.steps, guidance_scale=7.0, output_type="pil")
        return time.perf_counter() - began

    runs = {"base (engine)": lambda: job(prompt), "LoRA merged (engine)": merged,
            "base (pipeline)": bare_base, "LoRA unmerged (pipeline)": unmerged}
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.runs):
        for name, run in runs.items():
            times[name].append(run())
    engine.shutdown()
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.steps}-step 64x64 images, median of {args.runs}:")
    for name, value in medians.items():
        print(f"  {name:26s} {value:.3f} s")
    merged = medians["base (engine)"] / medians["LoRA merged (engine)"]
    unmerged_ratio = medians["base (pipeline)"] / medians["LoRA unmerged (pipeline)"]
    print(f"  LoRA speed / base speed, merged (engine):     {merged:.3f}  (target >= {TARGET}: "
          f"{'met' if merged >= TARGET else 'missed'})")
    print(f"  LoRA speed / base speed, unmerged (pipeline): {unmerged_ratio:.3f}")


if __name__ == "__main__":
    main()
