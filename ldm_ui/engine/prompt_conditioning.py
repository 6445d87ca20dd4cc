"""The engine's side of the prompt language: a job's prompts -> the pipeline's embeddings, step by step.

    conditioning = job_conditioning(ctx, pipe, prompts, [negative] * len(prompts), steps)
    pipe(**call_kwargs_for(conditioning), callback_on_step_end=StepCallback(..., conditioning=conditioning))

LoRA tags are stripped here (they never reach the text encoder), the clip skip is the request's or the app's,
and the embeddings are the engine's library. Interpolation mixes two conditionings row by row (`Mixed`).
"""

from __future__ import annotations

from typing import Any

import torch

from ldm_ui.engine.adapters import encoder_prompt
from ldm_ui.engine.vae import execution_device
from ldm_ui.prompts.conditioning import PromptConditioning, build_conditioning


def clip_skip_for(ctx) -> int:
    request_value = getattr(ctx.request, "clip_skip", None)
    return request_value if request_value is not None else ctx.config.clip_skip


class PlainPrompts:
    """For pipelines the prompt language does not cover (SD3's DiT with its T5 encoder): the texts as they are,
    encoded by the pipeline itself, as before."""

    tensor_inputs: list[str] = []
    infotext: dict[str, str] = {}

    def __init__(self, prompts: list[str], negative_prompts: list[str]):
        self.prompts, self.negative_prompts = prompts, negative_prompts

    def pipeline_kwargs(self) -> dict[str, list[str]]:
        return {"prompt": self.prompts, "negative_prompt": self.negative_prompts}

    def update_for_step(self, step_index: int, guided: bool = True) -> None:
        return None


def covered(pipe) -> bool:
    """UNet pipelines with CLIP text encoders: SD1.x, SD2.x, SDXL and the built-in model."""
    return getattr(pipe, "unet", None) is not None and getattr(pipe, "text_encoder_3", None) is None


def conditioning_key(prompts: list[str], negative_prompts: list[str], steps: int, clip_skip: int, embeddings: dict,
                     lora_state: tuple) -> tuple:
    fingerprints = tuple(sorted((name, e.short_hash) for name, e in embeddings.items()))
    return (tuple(prompts), tuple(negative_prompts), steps, clip_skip, fingerprints, lora_state)


def job_conditioning(ctx, pipe, prompts: list[str], negative_prompts: list[str], steps: int, model=None):
    """`model`: the LoadedModel whose kept conditioning `pipe` uses (default: the job's model; the SDXL refiner's
    text encoder is its own)."""
    if not covered(pipe):
        return PlainPrompts([encoder_prompt(p) for p in prompts], list(negative_prompts))
    clip_skip, embeddings = clip_skip_for(ctx), ctx.embeddings()

    def build() -> PromptConditioning:
        # a stand-in pipeline (tests) may have no `_execution_device`: the text encoder's device then
        device = execution_device(pipe) if hasattr(type(pipe), "_execution_device") else None
        return build_conditioning(pipe, [encoder_prompt(p) for p in prompts], list(negative_prompts), steps,
                                  clip_skip, embeddings, device=device)

    cache = getattr(model or ctx.model, "last_conditioning", None)
    if cache is None:
        return build()
    return cache.get(conditioning_key(prompts, negative_prompts, steps, clip_skip, embeddings, ctx.lora_state), build)


def call_kwargs_for(conditioning, first_step: int = 0) -> dict[str, Any]:
    """The embeddings for the first step (`first_step` of the schedule: a later stage's call starts there), and
    the tensors the step callback may replace."""
    kwargs = conditioning.pipeline_kwargs(first_step) if first_step else conditioning.pipeline_kwargs()
    return {**kwargs,
            "callback_on_step_end_tensor_inputs": ["latents", *conditioning.tensor_inputs]}


def step_updates(conditioning, pipe, step: int) -> dict[str, torch.Tensor]:
    """What the callback at the end of `step` swaps in for the next one (empty when nothing changes)."""
    if conditioning is None:
        return {}
    guided = bool(getattr(pipe, "do_classifier_free_guidance", True))
    return conditioning.update_for_step(step + 1, guided) or {}


class Mixed:
    """Rows 0 and 1 of a two-prompt conditioning, mixed at `t` (a straight line), with the same step schedule."""

    def __init__(self, conditioning: PromptConditioning, t: float, mix):
        self.conditioning, self.t, self.mix = conditioning, t, mix
        self.tensor_inputs = conditioning.tensor_inputs
        self.infotext = conditioning.infotext

    def _rows(self, tensor: torch.Tensor, halves: int) -> torch.Tensor:
        """`tensor` holds `halves` blocks of two rows (A, B): each block mixed into one row."""
        blocks = tensor.chunk(halves)
        return torch.cat([self.mix(block[0:1], block[1:2], self.t) for block in blocks])

    def pipeline_kwargs(self) -> dict[str, torch.Tensor]:
        return {name: self._rows(value, 1) for name, value in self.conditioning.pipeline_kwargs().items()}

    def update_for_step(self, step_index: int, guided: bool = True) -> dict[str, torch.Tensor] | None:
        update = self.conditioning.update_for_step(step_index, guided)
        if update is None:
            return None
        return {name: self._rows(value, 2 if guided else 1) for name, value in update.items()}
