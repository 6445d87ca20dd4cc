"""Pixel geometry for img2img and inpainting: resize modes, masks, crop regions, fill, paste-back.

Pure PIL/numpy (no torch), so requests can validate masks and the runners and tests share one set of rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

MIN_SIDE, MAX_SIDE = 64, 2048


def round_to_8(value: float) -> int:
    return max(8, int(round(value / 8)) * 8)


def size_for_image(image: Image.Image) -> tuple[int, int]:
    """The generation size an image suggests: its own, scaled to fit 64..2048 per side, in multiples of 8."""
    w, h = image.size
    scale = min(1.0, MAX_SIDE / max(w, h))
    if min(w, h) * scale < MIN_SIDE:
        scale = MIN_SIDE / min(w, h)
    return min(MAX_SIDE, max(MIN_SIDE, round_to_8(w * scale))), min(MAX_SIDE, max(MIN_SIDE, round_to_8(h * scale)))


@dataclass(frozen=True)
class Placement:
    """Where a width x height canvas sits over the source image, in source pixels (it may stick out)."""

    left: int
    top: int
    width: int
    height: int


def placement(source_size: tuple[int, int], width: int, height: int, mode: str) -> Placement:
    iw, ih = source_size
    if mode == "just resize":
        return Placement(0, 0, iw, ih)
    scale = max(width / iw, height / ih) if mode == "crop and resize" else min(width / iw, height / ih)
    pw, ph = max(1, round(width / scale)), max(1, round(height / scale))
    return Placement((iw - pw) // 2, (ih - ph) // 2, pw, ph)


def resize_image(image: Image.Image, width: int, height: int, mode: str,
                 resample: int = Image.Resampling.LANCZOS) -> Image.Image:
    """The image on a width x height canvas: stretched, cropped to cover, or fitted with its edges stretched out."""
    if mode not in ("just resize", "crop and resize", "resize and fill"):
        raise ValueError(f"unknown resize mode {mode!r}")
    iw, ih = image.size
    if mode == "just resize" or (iw, ih) == (width, height):
        return image.resize((width, height), resample)
    if mode == "crop and resize":
        scale = max(width / iw, height / ih)
        rw, rh = max(width, round(iw * scale)), max(height, round(ih * scale))
        resized = image.resize((rw, rh), resample)
        left, top = (rw - width) // 2, (rh - height) // 2
        return resized.crop((left, top, left + width, top + height))
    scale = min(width / iw, height / ih)
    rw, rh = min(width, max(1, round(iw * scale))), min(height, max(1, round(ih * scale)))
    resized = image.resize((rw, rh), resample)
    canvas = Image.new(image.mode, (width, height))
    left, top = (width - rw) // 2, (height - rh) // 2
    canvas.paste(resized, (left, top))
    # the empty bands take the stretched edge row/column, so no hard border is left for the model to keep
    if left > 0:
        canvas.paste(resized.crop((0, 0, 1, rh)).resize((left, rh)), (0, top))
        right = width - left - rw
        canvas.paste(resized.crop((rw - 1, 0, rw, rh)).resize((right, rh)), (left + rw, top))
    if top > 0:
        canvas.paste(resized.crop((0, 0, rw, 1)).resize((rw, top)), (left, 0))
        bottom = height - top - rh
        canvas.paste(resized.crop((0, rh - 1, rw, rh)).resize((rw, bottom)), (left, top + rh))
    return canvas


# ---- masks: white (255) marks what to repaint


def mask_to_binary(mask: Image.Image) -> Image.Image:
    """An 'L' mask of 0/255. Painted layers use their alpha; opaque masks use brightness (white = repaint)."""
    if mask.mode in ("RGBA", "LA", "PA") or (mask.mode == "P" and "transparency" in mask.info):
        rgba = mask.convert("RGBA")
        alpha = rgba.getchannel("A")
        if alpha.getextrema()[0] < 255:  # some transparency: the strokes are what was painted
            return alpha.point(lambda v: 255 if v >= 128 else 0)
        mask = rgba.convert("RGB")
    return mask.convert("L").point(lambda v: 255 if v >= 128 else 0)


def blur_mask(mask: Image.Image, blur_px: int) -> Image.Image:
    return mask.filter(ImageFilter.GaussianBlur(blur_px)) if blur_px > 0 else mask.copy()


def crop_region(mask: Image.Image, padding_px: int, width: int, height: int) -> tuple[int, int, int, int]:
    """The box around the mask plus padding, widened to the canvas' aspect ratio and kept inside the image."""
    box = mask.getbbox()
    if box is None:
        raise ValueError("the mask is empty")
    iw, ih = mask.size
    x0, y0 = max(0, box[0] - padding_px), max(0, box[1] - padding_px)
    x1, y1 = min(iw, box[2] + padding_px), min(ih, box[3] + padding_px)
    want = width / height
    bw, bh = x1 - x0, y1 - y0
    if bw / bh < want:
        bw = min(iw, math.ceil(bh * want))
    else:
        bh = min(ih, math.ceil(bw / want))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(min(max(0, round(cx - bw / 2)), iw - bw))
    top = int(min(max(0, round(cy - bh / 2)), ih - bh))
    return left, top, left + bw, top + bh


def latent_cell_mask(mask: Image.Image, cell: int = 8) -> Image.Image:
    """Every cell x cell block that the mask touches, fully set: a thin stroke still covers whole latent pixels."""
    w, h = mask.size
    bits = np.asarray(mask) >= 128
    cw, ch = math.ceil(w / cell), math.ceil(h / cell)
    padded = np.zeros((ch * cell, cw * cell), dtype=bool)
    padded[:h, :w] = bits
    cells = padded.reshape(ch, cell, cw, cell).any(axis=(1, 3))
    full = np.repeat(np.repeat(cells, cell, axis=0), cell, axis=1)[:h, :w]
    return Image.fromarray(np.where(full, 255, 0).astype(np.uint8), "L")


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """Masked pixels replaced by a smooth guess from the colors around them ('fill' masked content)."""
    from scipy.ndimage import gaussian_filter

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    keep = (np.asarray(mask) < 128).astype(np.float32)
    if keep.sum() == 0:
        return Image.new("RGB", image.size, (127, 127, 127))
    filled = np.zeros_like(pixels)
    have = np.zeros(keep.shape, dtype=bool)
    for sigma in (max(image.size) / 4, max(image.size) / 16, 4.0):  # coarse first, finer where it has support
        weight = gaussian_filter(keep, sigma, mode="nearest")
        colors = gaussian_filter(pixels * keep[..., None], (sigma, sigma, 0), mode="nearest")
        ok = weight > 1e-3
        filled[ok] = colors[ok] / weight[ok][:, None]
        have |= ok
    filled[~have] = pixels[keep > 0].mean(axis=0)
    out = np.where(keep[..., None] > 0, pixels, filled)
    return Image.fromarray(np.clip(out + 0.5, 0, 255).astype(np.uint8), "RGB")


def paste_back(original: Image.Image, generated: Image.Image, box: tuple[int, int, int, int],
               soft_mask: Image.Image) -> Image.Image:
    """Generated pixels placed over `box` of the original, kept only where the (blurred) mask is set.

    Where the mask is 0 the result is the original's pixel, bit for bit.
    """
    left, top, right, bottom = box
    placed = original.copy()
    placed.paste(generated.convert("RGB").resize((right - left, bottom - top), Image.Resampling.LANCZOS),
                 (left, top))
    return Image.composite(placed, original, soft_mask)
