"""Single-file load time: an SD1.5-sized checkpoint through ldm-ui's loader vs a bare diffusers call.

Random fp16 weights at SD1.5's real sizes (nothing to download), saved once in the original LDM layout. Each round
loads it through `load_single_file` (header checks, family recognition, cached config folder, then diffusers'
`from_single_file`) and through `StableDiffusionPipeline.from_single_file` on the same config folder; the two
alternate in one run. Prints the median of each and the ratio (target: <= 1.05, i.e. our checks cost little).
Run: python benchmarks/single_file_load.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def write_sd15_sized_file(path: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from ldm_layout import unet_to_ldm, vae_to_ldm
    from ldm_ui.engine.single_file import CONFIGS_DIR
    from original_layouts import hf_clip_to_prefix

    def config(name: str) -> dict:
        return json.loads((CONFIGS_DIR / "sd1" / name / "config.json").read_text())

    with torch.device("meta"):
        layout = {**unet_to_ldm(UNet2DConditionModel.from_config(config("unet"))),
                  **vae_to_ldm(AutoencoderKL.from_config(config("vae"))),
                  **hf_clip_to_prefix(CLIPTextModel(CLIPTextConfig(**config("text_encoder"))),
                                      "cond_stage_model.transformer.")}
    generator = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(tuple(v.shape), generator=generator) * 0.02).half() for k, v in layout.items()}
    save_file(state, str(path))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import torch
    from diffusers import StableDiffusionPipeline

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.single_file import config_folder, load_single_file, recognize
    from ldm_ui.engine.checkpoint_files import read_safetensors_header

    work = Path(tempfile.mkdtemp(prefix="single-file-bench-"))
    path = work / "sd15-sized.safetensors"
    began = time.perf_counter()
    write_sd15_sized_file(path)
    print(f"wrote {path.stat().st_size / 1e9:.2f} GB in {time.perf_counter() - began:.0f} s")
    config = AppConfig(models_dir=work / "models", outputs_dir=work / "outputs", cache_dir=work / "cache")
    folder = config_folder(recognize(path, read_safetensors_header(path)), config.cache_dir)  # built once, as in use

    def ours():
        return load_single_file(path, config, torch.float32)[0]

    def bare():
        return StableDiffusionPipeline.from_single_file(str(path), config=str(folder), local_files_only=True,
                                                        torch_dtype=torch.float32)

    times: dict[str, list[float]] = {"ldm-ui": [], "bare diffusers": []}
    for _ in range(args.rounds):
        for name, load in (("ldm-ui", ours), ("bare diffusers", bare)):
            began = time.perf_counter()
            pipe = load()
            times[name].append(time.perf_counter() - began)
            del pipe
            gc.collect()
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, value in medians.items():
        print(f"{name:>15}: median {value:.2f} s over {args.rounds} rounds ({', '.join(f'{t:.2f}' for t in times[name])})")
    print(f"ratio ldm-ui / bare diffusers: {medians['ldm-ui'] / medians['bare diffusers']:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
