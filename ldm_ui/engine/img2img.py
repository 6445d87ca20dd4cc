"""img2img (SDEdit) and inpainting runners, on the pipelines `from_pipe` builds over the loaded weights.

img2img: the init image is placed on the canvas (resize mode), VAE-encoded, noised to the timestep `strength`
selects and denoised from there; a strength that leaves no step returns the input through the VAE.

Inpainting: diffusers' inpaint pipeline, which blends the latents with the (re-noised) original outside the mask
after every step for ordinary 4-channel UNets and feeds mask + masked image to 9-channel inpainting UNets. The
decoded result is then pasted back over the input through the blurred mask, so pixels outside it are the input's.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from PIL import Image

from ldm_ui.image_ops import (
    blur_mask, crop_region, fill_masked, latent_cell_mask, paste_back, placement, resize_image,
)
from ldm_ui.requests import Finished, Img2ImgRequest, InpaintRequest

if TYPE_CHECKING:
    from ldm_ui.engine.tasks import TaskContext

IMG2IMG_PIPELINE = "AutoPipelineForImage2Image"
INPAINT_PIPELINE = "AutoPipelineForInpainting"


def task_pipeline(model, auto_class_name: str):
    pipe = model.pipeline(auto_class_name)
    pipe.set_progress_bar_config(disable=True)  # from_pipe does not carry the loaded pipeline's setting over
    return pipe


def denoising_steps(steps: int, strength: float) -> int:
    """How many of `steps` SDEdit runs: the last `strength` fraction of the schedule (diffusers' rule)."""
    return min(int(steps * strength), steps)


class ReconstructionOnly:
    """Stands in for a pipeline when the strength leaves no step to run: the latents of the init image itself.

    run_batches then decodes them as usual, so the output is the input through the VAE, saved with its infotext.
    """

    num_timesteps = 0

    def __init__(self, pipe, latents: torch.Tensor):
        self.vae, self.image_processor = pipe.vae, pipe.image_processor
        self.scheduler = pipe.scheduler
        self.latents = latents

    def __call__(self, *, prompt: list[str], **_: Any) -> SimpleNamespace:
        return SimpleNamespace(images=self.latents.repeat(len(prompt), 1, 1, 1))


def encode_image(pipe, image: Image.Image) -> torch.Tensor:
    """The VAE latent of an RGB image (its mean, so the same image always gives the same latent), scaled."""
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image.convert("RGB")).to(vae.device, vae.dtype)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mode()
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * vae.config.scaling_factor


def steps_summary(request: Img2ImgRequest, steps_run: int) -> str:
    if steps_run == 0:
        return (f"Denoising strength {request.strength:g} leaves no step of {request.steps} to run: "
                "the input went through the VAE only.")
    return f"Denoising strength {request.strength:g}: {steps_run} of {request.steps} steps run."


def _with_summary(finished: Finished, summary: str, **info: Any) -> Finished:
    return dataclasses.replace(finished, info={**finished.info, **info, "summary": summary})


# ---- img2img


def run_img2img(ctx: TaskContext) -> Finished:
    from ldm_ui.engine.tasks import run_batches, target_size

    request, model = ctx.job.request, ctx.model
    width, height = target_size(request, model)
    canvas = resize_image(request.init_image.convert("RGB"), width, height, request.resize_mode)
    extra = {"Denoising strength": f"{request.strength:g}", "Resize mode": request.resize_mode}
    if model.is_inpainting_model:
        # a 9-channel UNet needs a mask: all of it repainted is plain img2img
        full = Image.new("L", (width, height), 255)
        pipe = task_pipeline(model, INPAINT_PIPELINE)
        latents = encode_image(pipe, canvas)
        call_kwargs = {"image": latents, "mask_image": full, "masked_image_latents": torch.zeros_like(latents),
                       "strength": request.strength}
    else:
        pipe = task_pipeline(model, IMG2IMG_PIPELINE)
        latents = None
        call_kwargs = {"image": canvas, "strength": request.strength}
    if denoising_steps(request.steps, request.strength) == 0:
        pipe = ReconstructionOnly(pipe, latents if latents is not None else encode_image(pipe, canvas))
    finished = run_batches(ctx, pipe, call_kwargs, extra)
    steps_run = finished.info["steps_run"]  # the pipeline that ran may be a ControlNet variant of `pipe`
    return _with_summary(finished, steps_summary(request, steps_run), steps_run=steps_run)


# ---- inpainting


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


def run_inpaint(ctx: TaskContext) -> Finished:
    from ldm_ui.engine.tasks import run_batches, target_size

    request, model = ctx.job.request, ctx.model
    width, height = target_size(request, model)
    canvas, note = inpaint_canvas(request, width, height)
    pipe = task_pipeline(model, INPAINT_PIPELINE)
    latents = masked_content_latents(request, encode_image(pipe, canvas.image), canvas.mask)
    if model.is_inpainting_model:
        gray = Image.composite(Image.new("RGB", canvas.image.size, (128, 128, 128)), canvas.image, canvas.mask)
        masked_image_latents = encode_image(pipe, gray)
    else:  # unused by a 4-channel UNet, but passing latents keeps the pipeline from re-encoding pixels
        masked_image_latents = latents
    call_kwargs = {"image": latents, "mask_image": canvas.mask, "masked_image_latents": masked_image_latents,
                   "strength": request.strength}
    if denoising_steps(request.steps, request.strength) == 0:
        pipe = ReconstructionOnly(pipe, latents)
    original = request.init_image.convert("RGB")
    postprocess: Callable[[list[Image.Image]], list[Image.Image]] = lambda images: [
        paste_back(original, image, canvas.box, canvas.soft_mask) for image in images]
    extra = {
        "Denoising strength": f"{request.strength:g}", "Mask blur": request.mask_blur_px,
        "Masked content": request.masked_content, "Inpaint area": request.inpaint_area,
        "Only masked padding": request.only_masked_padding_px if request.inpaint_area == "only masked" else None,
        "Mask mode": "inpaint not masked" if request.invert_mask else None,
        "Resize mode": request.resize_mode if request.inpaint_area == "whole picture" else None,
        "Inpainting model": "9-channel" if model.is_inpainting_model else None,
    }
    finished = run_batches(ctx, pipe, call_kwargs, extra, postprocess=postprocess)
    steps_run = finished.info["steps_run"]  # the pipeline that ran may be a ControlNet variant of `pipe`
    summary = " ".join(part for part in (steps_summary(request, steps_run), note) if part)
    return _with_summary(finished, summary, steps_run=steps_run, crop_box=canvas.box)
