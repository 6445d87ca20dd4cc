"""Inpainting, on diffusers' inpaint pipeline built with `from_pipe` over the loaded weights.

The pipeline blends the latents with the (re-noised) original outside the mask after every step for ordinary
4-channel UNets and feeds mask + masked image to 9-channel inpainting UNets. The decoded result is then pasted
back over the input through the blurred mask, so pixels outside it are the input's.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.families import fit_request
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches, target_size
from ldm_ui.engine.tasks.img2img import (
    INPAINT_PIPELINE, ReconstructionOnly, denoising_steps, steps_summary, task_pipeline, variation_noise,
)
from ldm_ui.image_ops import blur_mask, crop_region, fill_masked, latent_cell_mask, paste_back, placement, resize_image
from ldm_ui.requests import Finished, InpaintRequest


@dataclasses.dataclass
class InpaintCanvas:
    """What the pipeline works on, and how its output goes back over the input."""

    image: Image.Image  # width x height, RGB
    mask: Image.Image  # width x height, 0/255: what the pipeline repaints (whole latent cells)
    box: tuple[int, int, int, int]  # where the canvas lands on the input, in input pixels (may stick out)
    soft_mask: Image.Image  # input size: the blurred mask the result is pasted back through


def inpaint_canvas(request: InpaintRequest, width: int, height: int) -> tuple[InpaintCanvas, str]:
    original = request.init_image.convert("RGB")
    hard, note = request.binary_mask()
    soft = blur_mask(hard, request.mask_blur_px)
    if request.inpaint_area == "only masked":
        box = crop_region(soft, request.only_masked_padding_px, width, height)
        image = original.crop(box).resize((width, height), Image.Resampling.LANCZOS)
        mask = hard.crop(box).resize((width, height), Image.Resampling.BILINEAR)
    else:
        place = placement(original.size, width, height, request.resize_mode)
        box = (place.left, place.top, place.left + place.width, place.top + place.height)
        image = resize_image(original, width, height, request.resize_mode)
        mask = resize_image(hard, width, height, request.resize_mode, Image.Resampling.BILINEAR)
    mask = latent_cell_mask(mask.point(lambda v: 255 if v >= 128 else 0))
    if mask.getbbox() is None:  # the mask lies outside what "crop and resize" keeps
        mask = latent_cell_mask(resize_image(hard, width, height, "just resize", Image.Resampling.BILINEAR))
    if request.masked_content == "fill":
        image = fill_masked(image, mask)
    return InpaintCanvas(image, mask, box, soft), note


def masked_content_latents(request: InpaintRequest, latents: torch.Tensor, mask: Image.Image) -> torch.Tensor:
    """The starting latents inside the mask: the image's own, fresh noise, or zeros ('latent nothing')."""
    if request.masked_content not in ("latent noise", "latent nothing"):
        return latents
    h, w = latents.shape[-2:]
    cells = np.asarray(mask.resize((w, h), Image.Resampling.BOX)) >= 128
    inside = torch.from_numpy(cells).to(latents.device)[None, None]
    if request.masked_content == "latent nothing":
        return torch.where(inside, torch.zeros_like(latents), latents)
    # one noise for the job: each image still differs by the seeded noise the pipeline adds
    generator = torch.Generator("cpu").manual_seed(max(request.seed, 0) + 0x5EED)
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    return torch.where(inside, noise, latents)


def run(ctx: TaskContext) -> Finished:
    ctx.request, notes = fit_request(ctx.request, ctx.model.family_row)  # e.g. Flux ignores a negative prompt
    request, model = ctx.request, ctx.model
    width, height = target_size(request, model)
    canvas, note = inpaint_canvas(request, width, height)
    pipe = task_pipeline(model, INPAINT_PIPELINE)
    latents = masked_content_latents(request, model.vae.encode(canvas.image), canvas.mask)
    if model.is_inpainting_model:
        gray = Image.composite(Image.new("RGB", canvas.image.size, (128, 128, 128)), canvas.image, canvas.mask)
        masked_image_latents = model.vae.encode(gray)
    else:  # unused by a 4-channel UNet, but passing latents keeps the pipeline from re-encoding pixels
        masked_image_latents = latents
    call_kwargs = {"image": latents, "mask_image": canvas.mask, "masked_image_latents": masked_image_latents,
                   "strength": request.strength}
    noise_fields = variation_noise(model, request, latents, inpaint_pipeline=True)
    if denoising_steps(request.steps, request.strength) == 0:
        pipe, noise_fields = ReconstructionOnly(pipe, latents), {}  # no noise is added
    original = request.init_image.convert("RGB")
    extra = {
        "Denoising strength": f"{request.strength:g}", "Mask blur": request.mask_blur_px,
        "Masked content": request.masked_content, "Inpaint area": request.inpaint_area,
        "Only masked padding": request.only_masked_padding_px if request.inpaint_area == "only masked" else None,
        "Mask mode": "inpaint not masked" if request.invert_mask else None,
        "Resize mode": request.resize_mode if request.inpaint_area == "whole picture" else None,
        "Inpainting model": "9-channel" if model.is_inpainting_model else None,
    }
    plan = SamplingPlan(
        pipe=pipe, call_kwargs=call_kwargs, infotext=extra, crop_box=canvas.box, **noise_fields,
        postprocess=lambda images: [paste_back(original, image, canvas.box, canvas.soft_mask) for image in images],
    )
    outputs, stats = run_batches(ctx, plan)
    summary = " ".join(part for part in (steps_summary(request, stats.steps_run), note, *notes) if part)
    return Finished(outputs=outputs, summary=summary, result=stats)
