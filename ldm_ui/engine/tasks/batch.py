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

from ldm_ui.engine.adapters import prepare_adapters
from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.prompt_conditioning import call_kwargs_for, job_conditioning
from ldm_ui.engine.noise import initial_noise, variation_infotext
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.vae_choice import vae_infotext
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
    # a second pass over each batch's latents (hires fix): (latents, seeds, prompts, batch_index) -> latents,
    # or None when the user skipped it
    second_pass: Callable[[torch.Tensor, list[int], list[str], int], torch.Tensor | None] | None = None
    # txt2img: the loop draws the initial noise (variation seeds, seed resize) and hands it over as `latents=`
    makes_noise: bool = False
    # img2img/inpaint: with a variation, the loop makes the noise and the scheduler's add_noise noises the init
    # latents with it (these pipelines draw their own); the value is the init latents' channel count. With
    # makes_noise too (inpaint at strength 1, which starts from pure noise), the noise also goes in as `latents=`.
    noises_init_latents: int | None = None
    # steps a later stage runs on the same latents and counts on (the SDXL refiner): the progress shows one count
    steps_after: int = 0


def run_batches(ctx: TaskContext, plan: SamplingPlan) -> tuple[list[Output], SamplingStats]:
    request, model = ctx.request, ctx.model
    width, height = target_size(request, model)
    # LoRA tags become active adapters; ControlNet units swap in the ControlNet variant of the pipeline
    pipe, call_kwargs, adapter_infotext = prepare_adapters(ctx, plan.pipe, plan.call_kwargs, width, height)
    infotext_extra = {**plan.infotext, **adapter_infotext}
    first_seed = resolve_seed(request.seed)
    noise_is_ours = plan.makes_noise or plan.noises_init_latents is not None
    variation = getattr(request, "variation", None) if noise_is_ours else None
    variation = variation if variation is not None and variation.active else None  # strength 0, no resize: off
    first_variation_seed = resolve_seed(variation.seed) if variation is not None and variation.strength > 0 else None
    folder = ctx.output_folder(request.task)
    outputs: list[Output] = []
    sampling_s = preview_s = 0.0
    previews = 0
    for batch_index in range(request.batch_count):
        ctx.check_cancel()
        seeds = batch_seeds(first_seed, batch_index, request.batch_size)
        prompts = [ctx.transform_prompt(request.prompt, seed) for seed in seeds]
        pipe.scheduler = make_scheduler(request.sampler, model.base_scheduler_config, seed=seeds[0])
        if ctx.config.compile_unet and (width, height, len(seeds)) not in model.compiled_sizes:
            model.compiled_sizes.add((width, height, len(seeds)))
            ctx.status(f"compiling the U-Net for {width}x{height} (first image at this size; later ones are faster)…")
        generators = seeded_generators(seeds)
        variation_seeds = ([] if first_variation_seed is None else
                           batch_seeds(first_variation_seed, batch_index, request.batch_size))
        noise_kwargs = {"latents": initial_noise(pipe, width, height, seeds, generators, variation,
                                                 variation_seeds, plan.noises_init_latents)} if plan.makes_noise else {}
        if variation is not None and plan.noises_init_latents is not None:
            # fresh generators when the pipeline draws (and advances) its own, so its later draws are unchanged
            pipe.scheduler.initial_noise = noise_kwargs["latents"] if noise_kwargs else initial_noise(
                pipe, width, height, seeds, seeded_generators(seeds), variation, variation_seeds,
                plan.noises_init_latents)
        began = time.perf_counter()
        # the prompt language (weights, chunks, editing, embeddings, clip skip): encoded once per distinct text
        conditioning = job_conditioning(ctx, pipe, prompts, [request.negative_prompt] * len(seeds), request.steps)
        callback = StepCallback(ctx, batch_index, request.batch_count, conditioning=conditioning,
                                steps_after=plan.steps_after)
        latents = sample(
            ctx, pipe, callback, **call_kwargs_for(conditioning),
            num_inference_steps=request.steps, guidance_scale=request.cfg_scale, width=width, height=height,
            generator=generators, **noise_kwargs, **call_kwargs,
        )
        sampling_s += time.perf_counter() - began
        preview_s += callback.preview_seconds
        previews += callback.previews
        if latents is None:  # skipped: on to the next batch
            continue
        if plan.second_pass is not None:
            latents = plan.second_pass(latents, seeds, prompts, batch_index)
            if latents is None:
                continue
        images = plan.postprocess(model.vae.decode(latents))
        ctx.check_cancel()
        for i, (image, seed, prompt) in enumerate(zip(images, seeds, prompts)):
            variation_seed = variation_seeds[i] if variation_seeds else None
            extra = {**vae_infotext(model), **infotext_extra, **conditioning.infotext,
                     **variation_infotext(variation, variation_seed)}
            infotext = infotext_for(request, model, prompt, seed, width, height, extra)
            outputs.append(ctx.save(image, folder, str(seed), infotext, seed))
    # steps_run: what the pipeline that ran (a ControlNet variant, maybe) reports
    stats = SamplingStats(first_seed=first_seed, width=width, height=height,
                          steps_run=getattr(pipe, "num_timesteps", request.steps), sampling_s=sampling_s,
                          preview_s=preview_s, previews=previews, crop_box=plan.crop_box)
    return outputs, stats
