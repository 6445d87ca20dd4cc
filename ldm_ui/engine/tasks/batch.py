"""The batch loop txt2img, img2img and inpaint share: seeds -> prompts -> sample -> decode -> postprocess -> save.

A task builds a `SamplingPlan` (which pipeline, what it adds to the call, its infotext entries, how its images
are finished) and hands it to `run_batches`, which owns everything the tasks have in common.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from PIL import Image

from ldm_ui.engine.adapters import encoder_prompt, prepare_adapters
from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.tasks.sampling import StepCallback, sample
from ldm_ui.metadata import build_infotext
from ldm_ui.requests import MAX_SEED, GenerationRequest, Output
from ldm_ui.results import SamplingStats


def resolve_seed(seed: int) -> int:
    return random.randint(0, MAX_SEED) if seed < 0 else seed


def batch_seeds(first_seed: int, batch_index: int, batch_size: int) -> list[int]:
    """Seeds for one batch: seed, seed+1, ... across the whole job, wrapping at 2**32."""
    start = first_seed + batch_index * batch_size
    return [(start + i) % (MAX_SEED + 1) for i in range(batch_size)]


def seeded_generators(seeds: list[int]) -> list[torch.Generator]:
    """One CPU generator per image: the same seed gives the same noise on every device."""
    return [torch.Generator("cpu").manual_seed(seed) for seed in seeds]


def target_size(request: GenerationRequest, model) -> tuple[int, int]:
    return request.width or model.native_size, request.height or model.native_size


def infotext_for(request: GenerationRequest, model, prompt: str, seed: int, width: int, height: int,
                 extra: dict[str, Any]) -> str:
    settings = {
        "Steps": request.steps, "Sampler": request.sampler, "CFG scale": f"{request.cfg_scale:g}", "Seed": seed,
        "Size": f"{width}x{height}", "Model hash": model.model_hash, "Model": model.entry.name,
        **extra, **request.extra_infotext,
    }
    return build_infotext(prompt, request.negative_prompt, settings)


def keep(images: list[Image.Image]) -> list[Image.Image]:
    return images


@dataclass
class SamplingPlan:
    """What one generation task adds to the shared loop."""

    pipe: Any  # the task's pipeline (a ControlNet variant replaces it when the request has units)
    call_kwargs: dict[str, Any] = field(default_factory=dict)  # image, strength, mask, ...
    infotext: dict[str, Any] = field(default_factory=dict)
    postprocess: Callable[[list[Image.Image]], list[Image.Image]] = keep  # e.g. paste an inpaint back
    crop_box: tuple[int, int, int, int] | None = None


def run_batches(ctx: TaskContext, plan: SamplingPlan) -> tuple[list[Output], SamplingStats]:
    request, model = ctx.request, ctx.model
    width, height = target_size(request, model)
    # LoRA tags become active adapters; ControlNet units swap in the ControlNet variant of the pipeline
    pipe, call_kwargs, adapter_infotext = prepare_adapters(ctx, plan.pipe, plan.call_kwargs, width, height)
    infotext_extra = {**plan.infotext, **adapter_infotext}
    first_seed = resolve_seed(request.seed)
    folder = ctx.output_folder(request.task)
    outputs: list[Output] = []
    sampling_s = preview_s = 0.0
    previews = 0
    for batch_index in range(request.batch_count):
        ctx.check_cancel()
        seeds = batch_seeds(first_seed, batch_index, request.batch_size)
        prompts = [ctx.transform_prompt(request.prompt, seed) for seed in seeds]
        pipe.scheduler = make_scheduler(request.sampler, model.base_scheduler_config, seed=seeds[0])
        callback = StepCallback(ctx, batch_index, request.batch_count)
        if ctx.config.compile_unet and (width, height, len(seeds)) not in model.compiled_sizes:
            model.compiled_sizes.add((width, height, len(seeds)))
            ctx.status(f"compiling the U-Net for {width}x{height} (first image at this size; later ones are faster)…")
        began = time.perf_counter()
        latents = sample(
            ctx, pipe, callback,
            prompt=[encoder_prompt(p) for p in prompts],
            negative_prompt=[request.negative_prompt] * len(seeds),
            num_inference_steps=request.steps, guidance_scale=request.cfg_scale, width=width, height=height,
            generator=seeded_generators(seeds), **call_kwargs,
        )
        sampling_s += time.perf_counter() - began
        preview_s += callback.preview_seconds
        previews += callback.previews
        if latents is None:  # skipped: on to the next batch
            continue
        images = plan.postprocess(model.vae.decode(latents))
        ctx.check_cancel()
        for image, seed, prompt in zip(images, seeds, prompts):
            infotext = infotext_for(request, model, prompt, seed, width, height, infotext_extra)
            outputs.append(ctx.save(image, folder, str(seed), infotext, seed))
    # steps_run: what the pipeline that ran (a ControlNet variant, maybe) reports
    stats = SamplingStats(first_seed=first_seed, width=width, height=height,
                          steps_run=getattr(pipe, "num_timesteps", request.steps), sampling_s=sampling_s,
                          preview_s=preview_s, previews=previews, crop_box=plan.crop_box)
    return outputs, stats
