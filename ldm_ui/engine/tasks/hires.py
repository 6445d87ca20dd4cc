"""Hires fix: txt2img's second pass, run on each batch's latents before they are decoded and saved.

Latent upscalers resize the latents themselves (torch interpolate, AUTOMATIC1111's modes); pixel upscalers decode
the first pass, upscale the pixels (Lanczos, Nearest or a learned model) and encode them again. Either way the
larger latents are then denoised by img2img at `denoising_strength`, with the hires sampler, steps and prompts.
Progress and previews go on through this pass as "hires: step N/M"; Interrupt and Skip work as in the first.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.prompt_conditioning import call_kwargs_for, job_conditioning
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.tasks.batch import seeded_generators
from ldm_ui.engine.tasks.img2img import IMG2IMG_PIPELINE, denoising_steps, task_pipeline
from ldm_ui.engine.tasks.sampling import StepCallback, sample
from ldm_ui.engine.upscalers import LATENT_UPSCALE_MODES
from ldm_ui.requests import HiresFix, Txt2ImgRequest


def hires_infotext(request: Txt2ImgRequest) -> dict[str, Any]:
    """The infotext entries, under AUTOMATIC1111's keys and with its rules for when each is written."""
    hires = request.hires
    return {
        "Denoising strength": f"{hires.denoising_strength:g}",
        "Hires sampler": hires.sampler if hires.sampler and hires.sampler != request.sampler else None,
        "Hires prompt": hires.prompt if hires.prompt and hires.prompt != request.prompt else None,
        "Hires negative prompt": (hires.negative_prompt if hires.negative_prompt
                                  and hires.negative_prompt != request.negative_prompt else None),
        "Hires upscale": None if hires.resizes else f"{hires.scale:g}",
        "Hires resize": f"{hires.resize_width}x{hires.resize_height}" if hires.resizes else None,
        "Hires steps": hires.steps or None,
        "Hires upscaler": hires.upscaler,
    }


def centre_crop_box(size: tuple[int, int], target: tuple[int, int], cell: int = 1) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a target-sized box centred in `size`, in units of `cell` pixels."""
    (w, h), (tw, th) = (size[0] // cell, size[1] // cell), (target[0] // cell, target[1] // cell)
    left, top = (w - tw) // 2, (h - th) // 2
    return left, top, left + tw, top + th


def upscale_latents(latents: torch.Tensor, mode: str, antialias: bool, size: tuple[int, int],
                    downscale: int) -> torch.Tensor:
    """Latents resized to `size` pixels (width, height) with torch's `mode`."""
    cells = (size[1] // downscale, size[0] // downscale)
    return F.interpolate(latents.float(), size=cells, mode=mode, antialias=antialias).to(latents.dtype)


class HiresPass:
    """The second pass for one job; called by the batch loop once per batch (SamplingPlan.second_pass)."""

    def __init__(self, ctx: TaskContext, width: int, height: int):
        self.ctx, self.request = ctx, ctx.request
        self.hires: HiresFix = ctx.request.hires
        self.upscaled, self.final = self.hires.sizes(width, height)  # raises RequestError past the size limit
        ctx.upscalers.check_name(self.hires.upscaler, ctx.upscalers.hires_upscalers())
        self.steps = self.hires.steps_for(self.request.steps)
        self.steps_run = 0  # per batch, as the pipeline reports it
        self.pipe = task_pipeline(ctx.model, IMG2IMG_PIPELINE)

    def upscale(self, latents: torch.Tensor) -> torch.Tensor:
        ctx, model = self.ctx, self.ctx.model
        downscale = model.vae.downscale
        if self.hires.upscaler in LATENT_UPSCALE_MODES:
            mode, antialias = LATENT_UPSCALE_MODES[self.hires.upscaler]
            latents = upscale_latents(latents, mode, antialias, self.upscaled, downscale)
            left, top, right, bottom = centre_crop_box(self.upscaled, self.final, downscale)
            return latents[..., top:bottom, left:right]
        encoded = []
        for image in model.vae.decode(latents):
            ctx.status(f"hires: upscaling {image.width}x{image.height} to {self.upscaled[0]}x{self.upscaled[1]} "
                       f"with {self.hires.upscaler}")
            image = ctx.upscalers.upscale(image, self.hires.upscaler, *self.upscaled, check_cancel=ctx.check_cancel)
            image = image.crop(centre_crop_box(self.upscaled, self.final))
            encoded.append(model.vae.encode(image))
        return torch.cat(encoded)

    def __call__(self, latents: torch.Tensor, seeds: list[int], prompts: list[str],
                 batch_index: int) -> torch.Tensor | None:
        ctx, request, hires, model = self.ctx, self.request, self.hires, self.ctx.model
        ctx.check_cancel()
        latents = self.upscale(latents)
        ctx.check_cancel()
        if denoising_steps(self.steps, hires.denoising_strength) == 0:
            return latents  # nothing to denoise: the upscaled first pass is the result
        prompts = [ctx.transform_prompt(hires.prompt, seed) for seed in seeds] if hires.prompt else prompts
        negative = hires.negative_prompt or request.negative_prompt
        self.pipe.scheduler = make_scheduler(hires.sampler or request.sampler, model.base_scheduler_config,
                                             seed=seeds[0])
        # the same prompt language as the first pass: weights, long prompts, editing over the hires steps
        conditioning = job_conditioning(ctx, self.pipe, prompts, [negative] * len(seeds), self.steps)
        callback = StepCallback(ctx, batch_index, request.batch_count, conditioning=conditioning, phase="hires")
        result = sample(
            ctx, self.pipe, callback, **call_kwargs_for(conditioning),
            image=latents, strength=hires.denoising_strength, num_inference_steps=self.steps,
            guidance_scale=request.cfg_scale, generator=seeded_generators(seeds),
            width=self.final[0], height=self.final[1],  # Flux packs its latents by the image size it is told
        )
        self.steps_run = getattr(self.pipe, "num_timesteps", self.steps)
        return result

    def summary(self) -> str:
        return (f"Hires fix: {self.final[0]}x{self.final[1]} with {self.hires.upscaler}, "
                f"{self.steps_run} of {self.steps} steps at denoising strength {self.hires.denoising_strength:g}.")
