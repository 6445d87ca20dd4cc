"""Pipelines that only have diffusers' older step callback, `callback(step, timestep, latents)` (PixArt-Sigma),
driven by the same StepCallback as every other pipeline.

The older callback cannot interrupt the loop through the pipeline's `_interrupt` flag, so a cancel or a skip ends
the call by raising out of the callback; the pipeline's offload cleanup (`maybe_free_model_hooks`) is then run
here, as the pipeline would have run it.
"""

from __future__ import annotations

import inspect
from typing import Any


def has_step_end_callback(pipe) -> bool:
    """False only for a pipeline that takes the older `callback` and not `callback_on_step_end`."""
    parameters = inspect.signature(type(pipe).__call__).parameters
    return "callback_on_step_end" in parameters or "callback" not in parameters


class _Stopped(Exception):
    """Raised from the older callback to end the pipeline's loop."""


class _PipelineView:
    """What StepCallback reads from a pipeline (step count, scheduler, the interrupt flag), for a pipeline that
    does not keep them itself."""

    def __init__(self, pipe, steps: int):
        self.scheduler = pipe.scheduler
        self.num_timesteps = steps
        self._interrupt = False


def call_with_legacy_callback(pipe, callback, call_kwargs: dict[str, Any]):
    """The pipeline's latents, or None when the callback asked it to stop."""
    kwargs = {k: v for k, v in call_kwargs.items() if k != "callback_on_step_end_tensor_inputs"}
    view = _PipelineView(pipe, int(kwargs.get("num_inference_steps", 0)))

    def legacy(step: int, timestep, latents) -> None:
        view.scheduler = pipe.scheduler
        callback(view, step, timestep, {"latents": latents})
        if view._interrupt:
            raise _Stopped

    try:
        return pipe(output_type="latent", callback=legacy, callback_steps=1, **kwargs).images
    except _Stopped:
        if hasattr(pipe, "maybe_free_model_hooks"):
            pipe.maybe_free_model_hooks()
        return None
