"""One denoising call with its step callback: progress, x0 previews, step hooks, cancel and skip.

Every task that runs a pipeline calls `sample()`; nothing else calls a pipeline with a callback.

Cancel and skip go through diffusers' own interrupt flag: the callback sets it, the pipeline runs no further
step, and its own cleanup (`maybe_free_model_hooks`, which moves offloaded models back to the CPU) still runs.
`sample()` then raises JobCancelled for a cancel, or returns None for a skip, so the decode is not paid for.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from PIL import Image

from ldm_ui.engine.context import ProgressClock, StepInfo, TaskContext
from ldm_ui.engine.latent_layout import unpacked
from ldm_ui.engine.preview import AutoPreview
from ldm_ui.engine.prompt_conditioning import step_updates
from ldm_ui.engine.tasks.legacy_steps import call_with_legacy_callback, has_step_end_callback
from ldm_ui.requests import Progress

PreviewDecoder = Callable[[Any], list[Image.Image]]


def preview_decoder(ctx: TaskContext) -> tuple[PreviewDecoder | None, int]:
    """The request's (or the app's) preview method as a latent -> images function, and how often to run it."""
    request, config = ctx.request, ctx.config
    method = request.preview_method or config.preview_method
    every = request.preview_every_n_steps or config.preview_every_n_steps
    if method == "auto":
        return AutoPreview(ctx.model), every  # per call: it keeps its own time budget
    if method == "approx":
        return ctx.model.approx_preview, every
    if method == "full":
        return ctx.model.full_preview, every
    return None, every


class StepCallback:
    """The pipeline's `callback_on_step_end`; with a prompt `conditioning`, it also swaps in the next step's
    text embeddings when prompt editing or alternation changes them."""

    def __init__(self, ctx: TaskContext, index: int, count: int, unit: str = "batch", conditioning=None,
                 phase: str = "", steps_before: int = 0, steps_after: int = 0):
        self.ctx, self.index, self.count, self.unit, self.phase = ctx, index, count, unit, phase
        # one step count over the stages of one image (the SDXL refiner finishes the base's call): the steps
        # the stages before this call ran, and those the stages after it will run
        self.steps_before, self.steps_after = steps_before, steps_after
        self.conditioning = conditioning
        self.preview, self.preview_every = preview_decoder(ctx)
        self.preview_interval = ctx.config.preview_interval_s
        self.next_preview_at = 0.0  # perf_counter time from which the next preview may be made
        self.clock = ProgressClock()
        self.preview_seconds = 0.0
        self.previews = 0
        self.image_size: tuple[int | None, int | None] = (None, None)  # (width, height): unpacks Flux's latents

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        ctx = self.ctx
        if self._should_stop():
            pipe._interrupt = True  # diffusers' documented way to end a call early; it skips the remaining steps
            return callback_kwargs
        steps = self.steps_before + pipe.num_timesteps + self.steps_after
        step += self.steps_before
        latents = unpacked(pipe, callback_kwargs["latents"], *self.image_size)
        x0 = unpacked(pipe, getattr(pipe.scheduler, "last_x0", None), *self.image_size)
        if self.preview is not None and step % self.preview_every == 0 and time.perf_counter() >= self.next_preview_at:
            began = time.perf_counter()
            image = self.preview(x0 if x0 is not None else latents)[0]
            self.preview_seconds += time.perf_counter() - began
            self.next_preview_at = began + self.preview_interval
            self.previews += 1
            ctx.preview(image, step + 1)
        info = StepInfo(step=step, steps=steps, latents=latents, x0=x0, request=ctx.request)
        for hook in list(ctx.hooks.step_hooks):
            hook(info)
        if info.stop:
            ctx.job.cancel()
        done = step + 1
        ctx.last_step, ctx.last_steps = done, steps
        rate, eta = self.clock.rate_and_eta(done - self.steps_before,
                                            (steps - done) + (self.count - self.index - 1) * steps)
        ctx.emit(Progress(step=done, steps=steps, batch_index=self.index, batch_count=self.count, it_per_s=rate,
                          eta_s=eta, unit=self.unit, phase=self.phase))
        if self._should_stop():
            pipe._interrupt = True
        return {**callback_kwargs, **step_updates(self.conditioning, pipe, step)}

    def _should_stop(self) -> bool:
        return self.ctx.cancelled or self.ctx.job.skip_requested()


def sample(ctx: TaskContext, pipe, callback: StepCallback, **call_kwargs: Any):
    """Run `pipe` to latents; None when the user skipped this image; raises JobCancelled on interrupt."""
    ctx.check_cancel()
    callback.image_size = (call_kwargs.get("width"), call_kwargs.get("height"))
    if has_step_end_callback(pipe):
        latents = pipe(output_type="latent", callback_on_step_end=callback, **call_kwargs).images
    else:
        latents = call_with_legacy_callback(pipe, callback, call_kwargs)
    ctx.check_cancel()  # an interrupt during the last step skips the decode
    if ctx.job.take_skip():
        return None
    return unpacked(pipe, latents, *callback.image_size)
