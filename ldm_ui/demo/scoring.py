"""Score the demo model on its own captions: every combination of color, shape and background with a fixed
seed, generated through the diffusers pipeline and judged from the pixels (judge.py).

Used by training (a mini-evaluation every few thousand steps) and by the evaluation CLI (evaluate.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldm_ui.demo import data
from ldm_ui.demo.judge import judge

STEPS = 20
GUIDANCE = 7.5  # the StableDiffusionPipeline default


@dataclass
class Case:
    color: str
    shape: str
    background: str
    seed: int

    @property
    def prompt(self) -> str:
        return data.caption(self.color, self.shape, self.background)


def prompts(every: int = 1) -> list[Case]:
    """Every ``every``-th of the 168 combinations, each with its own fixed seed."""
    return [Case(*combo, seed=1000 + i) for i, combo in enumerate(data.combinations()) if i % every == 0]


@torch.no_grad()
def generate(pipe, cases: list[Case], steps: int = STEPS, guidance: float = GUIDANCE,
             batch: int = 24) -> np.ndarray:
    """uint8 images (N, H, W, 3); one generator per image, so an image does not depend on its batch."""
    images = []
    for start in range(0, len(cases), batch):
        chunk = cases[start:start + batch]
        out = pipe([c.prompt for c in chunk], num_inference_steps=steps, guidance_scale=guidance,
                   generator=[torch.Generator().manual_seed(c.seed) for c in chunk], output_type="np")
        images.append((out.images * 255).round().astype(np.uint8))
    return np.concatenate(images)


def evaluate(pipe, cases: list[Case], steps: int = STEPS, guidance: float = GUIDANCE) -> dict:
    pipe.set_progress_bar_config(disable=True)
    images = generate(pipe, cases, steps, guidance)
    verdicts = [judge(image) for image in images]
    colors_right = [v.color == c.color and v.background == c.background for v, c in zip(verdicts, cases)]
    shape_right = [v.shape == c.shape for v, c in zip(verdicts, cases)]
    return {"images": images, "verdicts": verdicts, "cases": cases,
            "both_colors_right": float(np.mean(colors_right)), "shape_right": float(np.mean(shape_right)),
            "background_right": float(np.mean([v.background == c.background for v, c in zip(verdicts, cases)])),
            "color_right": float(np.mean([v.color == c.color for v, c in zip(verdicts, cases)]))}


def summary(result: dict) -> str:
    return (f"{len(result['cases'])} prompts: both colors right {result['both_colors_right']:.1%} "
            f"(shape color {result['color_right']:.1%}, background {result['background_right']:.1%}), "
            f"shape right {result['shape_right']:.1%}")
