"""What the SDXL refiner costs beyond its own U-Net steps, through the engine, on tiny SDXL-shaped models (CPU).

In the same run, in two blocks, this script times txt2img jobs of a tiny SDXL base alone and of the same job with
a tiny refiner at switch 0.8 (the base runs ~80% of the steps, the refiner the rest; the two U-Nets differ only
in their text widths, the refiner's being a little cheaper, so the two jobs do about the same U-Net work). It prints medians, the refined/base ratio (the hand-over's
overhead: a second prompt encoding, the refiner's scheduler and pipeline call; target <= 1.25 on these tiny
models, where fixed per-call costs weigh most), the refiner's first load, and how long a job that switches it
off takes to free it.
Run: python benchmarks/refiner_overhead.py [--runs 8 --steps 20]
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

TARGET = 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    import torch

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import RefinerSettings, Txt2ImgRequest
    from tiny_models import build_refiner_models

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp())
    models = build_refiner_models(work / "models")
    engine = Engine(AppConfig(models_dir=models, outputs_dir=work / "outputs", cache_dir=work / "cache",
                              default_model="tiny-sdxl", preview_method="off")).start()
    try:
        def request(refiner: bool) -> Txt2ImgRequest:
            settings = RefinerSettings(checkpoint="tiny-refiner", switch_at=0.8) if refiner else None
            return Txt2ImgRequest(prompt="a red cat", steps=args.steps, seed=1, width=64, height=64,
                                  save_images=False, refiner=settings)

        def timed(refiner: bool) -> float:
            began = time.perf_counter()
            engine.generate(request(refiner))
            return time.perf_counter() - began

        timed(False)  # the base's load
        first_refined = timed(True)  # the refiner's load and first job
        freeing = timed(False)  # frees the refiner, then runs the base alone
        timed(True)
        # blocks, not alternating: a job without the refiner frees it, so alternating would time a reload each time
        refined = [timed(True) for _ in range(args.runs)]
        base = [timed(False) for _ in range(args.runs + 1)]  # the first of these frees the refiner
        base_median, refined_median = statistics.median(base[1:]), statistics.median(refined)
        ratio = refined_median / base_median
        print(f"{args.steps}-step 64x64 txt2img, median of {args.runs} runs each (tiny SDXL-shaped models, CPU):")
        print(f"  base alone        {base_median * 1000:8.1f} ms")
        print(f"  base + refiner    {refined_median * 1000:8.1f} ms (switch at 0.8)")
        print(f"  refined/base      {ratio:8.2f}x (target <= {TARGET})")
        print(f"  first refined job {first_refined * 1000:8.1f} ms (loads the refiner)")
        print(f"  job freeing it    {freeing * 1000:8.1f} ms (a base-alone job that first frees the refiner)")
    finally:
        engine.shutdown()


if __name__ == "__main__":
    main()
