"""How fast the built-in demo model makes a 20-step 64x64 image on this CPU, through the engine.

Baseline in the same run: the bare diffusers pipeline loaded from the same folder. Prints median times, the
engine/bare ratio, and the engine time against the 0.3 s target. Run: python benchmarks/demo_speed.py
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

TARGET_S = 0.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads for both (default 0: what the engine picks for this model)")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch
    from diffusers import DiffusionPipeline

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.engine.samplers import make_scheduler
    from ldm_ui.requests import Txt2ImgRequest

    folder = ROOT / "models" / "diffusers" / "demo-shapes"
    bare_pipe = DiffusionPipeline.from_pretrained(folder, local_files_only=True)
    bare_pipe.set_progress_bar_config(disable=True)
    bare_pipe.scheduler = make_scheduler("Euler a", bare_pipe.scheduler.config)
    work = Path(tempfile.mkdtemp())
    engine = Engine(AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache", cpu_threads=args.threads))
    threads = engine.start().switch_model("demo-shapes").cpu_threads
    torch.set_num_threads(threads)  # the bare baseline (on this thread) runs with the engine's thread count
    prompt = "a red circle on a blue background"

    def bare() -> float:
        began = time.perf_counter()
        bare_pipe(prompt, num_inference_steps=args.steps, guidance_scale=7.0,
                  generator=torch.Generator("cpu").manual_seed(1), output_type="pil")
        return time.perf_counter() - began

    def through_engine(preview_method: str | None = "approx") -> float:
        began = time.perf_counter()
        engine.generate(Txt2ImgRequest(prompt=prompt, steps=args.steps, seed=1, sampler="Euler a",
                                       preview_method=preview_method))
        return time.perf_counter() - began

    bare(), through_engine(), through_engine(None)
    bare_times, engine_times, default_times = [], [], []
    for _ in range(args.runs):
        bare_times.append(bare())
        engine_times.append(through_engine())
        default_times.append(through_engine(None))
    engine.shutdown()
    bare_s, engine_s = statistics.median(bare_times), statistics.median(engine_times)
    default_s = statistics.median(default_times)
    print(f"{args.steps}-step 64x64 image, {threads} CPU thread(s), median of {args.runs}:")
    print(f"  bare diffusers pipeline: {bare_s:.3f} s")
    print(f"  through the engine:      {engine_s:.3f} s (approx previews every step, at most one per "
          f"{engine.config.preview_interval_s:g} s; infotext, PNG save)")
    paired = statistics.median(e / b for e, b in zip(engine_times, bare_times))
    print(f"  engine / bare ratio:     {engine_s / bare_s:.3f}  (target <= 1.03); median of the rounds' own ratios "
          f"(each round runs both back to back, so a slow spell of the machine cancels): {paired:.3f}")
    print(f"  with the app's default previews ({engine.config.preview_method}: full decodes of the demo's small "
          f"latent, at most 15% of sampling): {default_s:.3f} s, {default_s / bare_s:.3f} x bare")
    print(f"  engine / {TARGET_S} s target: {engine_s / TARGET_S:.2f}  ({'met' if engine_s <= TARGET_S else 'missed'})")


if __name__ == "__main__":
    main()
