"""Task runners: each turns one request into pipeline calls, previews, decoded and saved images.

A runner reads top to bottom like a diffusers pipeline: pick the pipeline -> set the sampler -> for each batch:
seeds -> denoise (with the step callback for progress, previews and cancel) -> decode -> save.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image

from ldm_ui.engine.adapters import encoder_prompt, prepare_adapters
from ldm_ui.engine.models import LoadedModel
from ldm_ui.engine.img2img import run_img2img, run_inpaint  # img2img.py imports this module lazily
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.metadata import build_infotext, save_png_atomically
from ldm_ui.requests import InspectLatentsRequest, InterpolateRequest
from ldm_ui.requests import (
    MAX_SEED, Finished, GenerationRequest, LoadModelRequest, Output, Preview, Progress, Request, RequestError,
    Txt2ImgRequest,
)
from ldm_ui.requests import Img2ImgRequest, InpaintRequest

log = logging.getLogger(__name__)

TILING_THRESHOLD_PX = 1024 * 1024  # VAE tiling above 1024x1024 keeps the decode within a gaming GPU's memory


@dataclass
class TaskContext:
    engine: Any  # ldm_ui.engine.engine.Engine (not imported: it imports this module)
    job: Any
    model: LoadedModel

    @property
    def config(self):
        return self.engine.config

    def check_cancel(self) -> None:
        from ldm_ui.engine.engine import JobCancelled

        if self.job.cancel_requested:
            raise JobCancelled("interrupted")


def resolve_seed(seed: int) -> int:
    return random.randint(0, MAX_SEED) if seed < 0 else seed


def batch_seeds(first_seed: int, batch_index: int, batch_size: int) -> list[int]:
    """Seeds for one batch: seed, seed+1, ... across the whole job, wrapping at 2**32."""
    start = first_seed + batch_index * batch_size
    return [(start + i) % (MAX_SEED + 1) for i in range(batch_size)]


def target_size(request: GenerationRequest, model: LoadedModel) -> tuple[int, int]:
    return request.width or model.native_size, request.height or model.native_size


class StepCallback:
    """The pipeline's `callback_on_step_end`: progress, x0 previews every N steps, hooks, and cancel."""

    def __init__(self, ctx: TaskContext, batch_index: int, preview: Callable | None, preview_every: int,
                 batch_count: int | None = None, unit: str = "batch"):
        self.ctx, self.batch_index = ctx, batch_index
        # a task that is not a batch loop (interpolation frames) says how many units the job has
        self.batch_count, self.unit = batch_count or ctx.job.request.batch_count, unit
        self.preview, self.preview_every = preview, preview_every
        self.started = time.perf_counter()
        self.preview_seconds = 0.0
        self.previews = 0

    def __call__(self, pipe, step: int, timestep, callback_kwargs: dict) -> dict:
        from ldm_ui.engine.engine import StepInfo

        ctx, request = self.ctx, self.ctx.job.request
        ctx.check_cancel()
        steps = pipe.num_timesteps
        latents = callback_kwargs["latents"]
        x0 = getattr(pipe.scheduler, "last_x0", None)
        if self.preview is not None and step % self.preview_every == 0:
            began = time.perf_counter()
            image = self.preview(x0 if x0 is not None else latents)[0]
            self.preview_seconds += time.perf_counter() - began
            self.previews += 1
            ctx.job.emit(Preview(image=image, step=step + 1))
        info = StepInfo(step=step, steps=steps, latents=latents, x0=x0, request=request)
        for hook in list(ctx.engine.step_hooks):
            hook(info)
        if info.stop:
            ctx.job.cancel()
        elapsed = time.perf_counter() - self.started
        done = step + 1
        rate = done / elapsed if elapsed > 0 else 0.0
        remaining = (steps - done) + (self.batch_count - self.batch_index - 1) * steps
        ctx.job.emit(Progress(step=done, steps=steps, batch_index=self.batch_index, batch_count=self.batch_count,
                              it_per_s=rate, eta_s=remaining / rate if rate else 0.0, unit=self.unit))
        ctx.check_cancel()
        return callback_kwargs


def preview_decoder(ctx: TaskContext) -> tuple[Callable | None, int]:
    request, config = ctx.job.request, ctx.config
    method = request.preview_method or config.preview_method
    every = request.preview_every_n_steps or config.preview_every_n_steps
    if method == "approx":
        return ctx.model.approx_preview, every
    if method == "full":
        return ctx.model.full_preview, every
    return None, every


def decode_latents(model: LoadedModel, pipe, latents: torch.Tensor) -> list[Image.Image]:
    """VAE decode; an fp16 decode that yields NaN (a known SD/SDXL VAE overflow) is redone in fp32."""
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z = latents / vae.config.scaling_factor + shift
    with torch.no_grad():
        images = vae.decode(z.to(vae.dtype)).sample
        if torch.isnan(images).any() and vae.dtype != torch.float32:
            log.warning("VAE decode gave NaN in %s; decoding in fp32 from now on", vae.dtype)
            vae.to(torch.float32)
            images = vae.decode(z.to(torch.float32)).sample
    return pipe.image_processor.postprocess(images.float(), output_type="pil")


def output_folder(ctx: TaskContext, task: str) -> Path:
    return ctx.config.outputs_dir / task / dt.date.today().isoformat()


def infotext_for(request: GenerationRequest, model: LoadedModel, prompt: str, seed: int, width: int, height: int,
                 extra: dict[str, Any]) -> str:
    settings = {
        "Steps": request.steps, "Sampler": request.sampler, "CFG scale": f"{request.cfg_scale:g}", "Seed": seed,
        "Size": f"{width}x{height}", "Model hash": model.model_hash, "Model": model.entry.name,
        **extra, **request.extra_infotext,
    }
    return build_infotext(prompt, request.negative_prompt, settings)


def run_batches(ctx: TaskContext, pipe, call_kwargs: dict[str, Any], infotext_extra: dict[str, Any],
                postprocess: Callable[[list[Image.Image]], list[Image.Image]] = lambda images: images) -> Finished:
    """The loop every generation task shares; `call_kwargs` carry what is task-specific (image, strength, mask)."""
    request, model = ctx.job.request, ctx.model
    width, height = target_size(request, model)
    # LoRA tags become active adapters; ControlNet units swap in the ControlNet variant of `pipe`
    pipe, call_kwargs, adapter_infotext = prepare_adapters(ctx, pipe, call_kwargs, width, height)
    infotext_extra = {**infotext_extra, **adapter_infotext}
    first_seed = resolve_seed(request.seed)
    preview, every = preview_decoder(ctx)
    pipe.scheduler = make_scheduler(request.sampler, model.base_scheduler_config)
    if hasattr(pipe.vae, "enable_tiling"):
        pipe.vae.enable_tiling() if width * height > TILING_THRESHOLD_PX else pipe.vae.disable_tiling()
    folder = output_folder(ctx, request.task)
    outputs: list[Output] = []
    timings = {"preview_s": 0.0, "previews": 0, "sampling_s": 0.0}
    for batch_index in range(request.batch_count):
        ctx.check_cancel()
        seeds = batch_seeds(first_seed, batch_index, request.batch_size)
        prompts = [apply_prompt_transforms(ctx, request.prompt, seed) for seed in seeds]
        callback = StepCallback(ctx, batch_index, preview, every)
        began = time.perf_counter()
        latents = pipe(
            prompt=[encoder_prompt(p) for p in prompts],
            negative_prompt=[request.negative_prompt] * len(seeds),
            num_inference_steps=request.steps,
            guidance_scale=request.cfg_scale,
            width=width, height=height,
            generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
            output_type="latent",
            callback_on_step_end=callback,
            **call_kwargs,
        ).images
        timings["sampling_s"] += time.perf_counter() - began
        timings["preview_s"] += callback.preview_seconds
        timings["previews"] += callback.previews
        ctx.check_cancel()  # an interrupt after the last step skips the decode
        images = postprocess(decode_latents(model, pipe, latents))
        ctx.check_cancel()
        for image, seed, prompt in zip(images, seeds, prompts):
            infotext = infotext_for(request, model, prompt, seed, width, height, infotext_extra)
            path = save_png_atomically(image, folder, str(seed), infotext) if request.save_images else None
            output = Output(image=image, seed=seed, infotext=infotext, path=str(path) if path else None)
            outputs.append(output)
            ctx.job.emit(output)
    # steps_run: what the pipeline that ran (a ControlNet variant, maybe) reports, for the runners' summaries
    return Finished(outputs=outputs, info={"first_seed": first_seed, "width": width, "height": height,
                                           "steps_run": getattr(pipe, "num_timesteps", request.steps), **timings})


def apply_prompt_transforms(ctx: TaskContext, prompt: str, seed: int) -> str:
    for transform in ctx.engine.prompt_transforms:
        prompt = transform(prompt, seed)
    return prompt


def run_txt2img(ctx: TaskContext) -> Finished:
    return run_batches(ctx, ctx.model.pipe, {}, {})


def run_load_model(ctx: TaskContext) -> Finished:
    return Finished(outputs=[], info={"model": ctx.model.entry.name, "native_size": ctx.model.native_size})


def run_interpolate(ctx: TaskContext) -> Finished:
    from ldm_ui.engine.interpolate import run_interpolate as run  # that module builds on this one

    return run(ctx)


def run_inspect_latents(ctx: TaskContext) -> Finished:
    from ldm_ui.engine.latent_inspector import run_inspect_latents as run  # that module builds on this one

    return run(ctx)


RUNNERS: dict[type, Callable[[TaskContext], Finished]] = {
    Txt2ImgRequest: run_txt2img,
    Img2ImgRequest: run_img2img, InpaintRequest: run_inpaint,
    LoadModelRequest: run_load_model,
    InterpolateRequest: run_interpolate,
    InspectLatentsRequest: run_inspect_latents,
}


def runner_for(request: Request) -> Callable[[TaskContext], Finished]:
    for request_type in type(request).__mro__:
        if request_type in RUNNERS:
            return RUNNERS[request_type]
    raise RequestError(f"no runner for {type(request).__name__}")
