"""Outpainting: extend the canvas, fill the new area, and inpaint it (plus an overlap) with the inpaint task.

The original pixels further than the overlap from a new edge come back bit for bit: the mask covers the new area
and reaches into the original only so far that its blurred edge still ends inside the overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image, ImageFilter

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.tasks import inpaint
from ldm_ui.requests import Finished, InpaintRequest, OutpaintRequest


@dataclass(frozen=True, kw_only=True)
class OutpaintCanvas(InpaintRequest):
    """The inpaint job an outpaint becomes; saved under outputs/outpaint."""

    task: ClassVar[str] = "outpaint"


def blur_spread_px(blur_px: int) -> int:
    """How far PIL's GaussianBlur(blur_px) carries a mask edge (measured: about 2.5 x the radius, plus one)."""
    return math.ceil(2.6 * blur_px) + 1 if blur_px else 0


def fitting_blur(blur_px: int, overlap_px: int) -> int:
    """The largest blur up to `blur_px` whose spread stays inside the overlap."""
    while blur_px > 0 and blur_spread_px(blur_px) > overlap_px:
        blur_px -= 1
    return blur_px


def extend(image: Image.Image, request: OutpaintRequest) -> Image.Image:
    """The image on the larger canvas, the new area filled by stretching or mirroring the image's edges."""
    pixels = np.asarray(image.convert("RGB"))
    pad = ((request.up, request.down), (request.left, request.right), (0, 0))
    if request.fill == "blurred mirror":
        mirrored = Image.fromarray(np.pad(pixels, pad, mode="symmetric"))
        radius = max(2, max(request.left, request.right, request.up, request.down) // 8)
        blurred = mirrored.filter(ImageFilter.GaussianBlur(radius))
        keep = Image.new("L", mirrored.size, 0)
        keep.paste(255, (request.left, request.up, request.left + image.width, request.up + image.height))
        return Image.composite(mirrored, blurred, keep)
    return Image.fromarray(np.pad(pixels, pad, mode="edge"))  # edge stretch (and under latent noise)


def outpaint_mask(request: OutpaintRequest, blur_px: int) -> Image.Image:
    """White over the new area and the part of the overlap the blurred edge needs, black elsewhere."""
    width, height = request.canvas_size
    reach = request.overlap_px - blur_spread_px(blur_px)  # into the original, from each extended side
    iw, ih = request.init_image.size
    keep_box = (request.left + (reach if request.left else 0), request.up + (reach if request.up else 0),
                request.left + iw - (reach if request.right else 0), request.up + ih - (reach if request.down else 0))
    mask = Image.new("L", (width, height), 255)
    if keep_box[0] < keep_box[2] and keep_box[1] < keep_box[3]:
        mask.paste(0, keep_box)
    return mask


def run(ctx: TaskContext) -> Finished:
    request: OutpaintRequest = ctx.request
    blur = fitting_blur(request.mask_blur_px, request.overlap_px)
    canvas = extend(request.init_image, request)
    sides = {"Outpaint left": request.left, "Outpaint right": request.right, "Outpaint up": request.up,
             "Outpaint down": request.down}
    extra = {**{k: v for k, v in sides.items() if v}, "Outpaint fill": request.fill,
             "Outpaint overlap": request.overlap_px, **request.extra_infotext}
    settings = {k: v for k, v in request.settings().items()
                if k not in ("left", "right", "up", "down", "fill", "overlap_px", "mask_blur_px", "extra_infotext")}
    job = OutpaintCanvas(**settings, init_image=canvas, mask=outpaint_mask(request, blur), mask_blur_px=blur,
                         masked_content="latent noise" if request.fill == "latent noise" else "original",
                         extra_infotext={k: str(v) for k, v in extra.items()})
    finished = inpaint.run(TaskContext(ctx.job, job, ctx.model, ctx.config, ctx.hooks, upscalers=ctx.upscalers))
    width, height = canvas.size
    summary = f"Outpainted {request.init_image.width}x{request.init_image.height} to {width}x{height}. "
    return Finished(outputs=finished.outputs, summary=summary + finished.summary, result=finished.result)
