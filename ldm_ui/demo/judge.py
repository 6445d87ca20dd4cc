"""Judge a demo-model image from its pixels: background color, shape color, shape and shape mask.

Tests across the project use it to assert what an image shows ("the demo model makes a red circle red").
It expects a demo-style scene: one shape on a plain background, any size (it works on the pixels as given).

    >>> verdict = judge(image)
    >>> verdict.color, verdict.shape, verdict.background
    ('red', 'circle', 'blue')
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ldm_ui.demo.data import PALETTE

_NAMES = list(PALETTE)
_RGB = np.array([PALETTE[name] for name in _NAMES], dtype=np.float32)
FOREGROUND_DISTANCE = 50.0  # RGB distance from the background that counts as shape; palette neighbours are >= 113 apart
MIN_SHAPE_FRACTION = 0.01  # less foreground than this (of the image) means "no shape"


@dataclass
class Judgement:
    background: str
    color: str | None  # None when no shape was found
    shape: str | None  # "circle", "square", "triangle" or None
    mask: np.ndarray  # (H, W) bool, True where the pixels differ from the background
    fill_ratio: float  # mask area / bounding-box area: square ~1, circle ~0.79 (pi/4), triangle ~0.5-0.7
    taper: float  # mask width near the top / width near the bottom: triangle ~0.3, circle and square ~1


def nearest_color(rgb) -> str:
    """Name of the palette color closest (Euclidean RGB) to ``rgb``."""
    distances = np.linalg.norm(_RGB - np.asarray(rgb, dtype=np.float32), axis=1)
    return _NAMES[int(distances.argmin())]


def _erode(mask: np.ndarray) -> np.ndarray:
    """3x3 binary erosion: a pixel stays set only if all its neighbours are set."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_and.reduce([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3 binary dilation: a pixel is set if any neighbour is set."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    return np.logical_or.reduce([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])


def _classify(mask: np.ndarray) -> tuple[str, float, float]:
    opened = _dilate(_erode(mask))  # opening: stray pixels must not stretch the box
    ys, xs = np.nonzero(opened if opened.any() else mask)
    top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
    area = (bottom - top + 1) * (right - left + 1)
    fill_ratio = float(mask.sum() / max(area, 1.0))
    height = bottom - top
    row_width = lambda y: mask[int(round(y))].sum()  # noqa: E731
    taper = float(row_width(top + 0.2 * height) / max(row_width(bottom - 0.2 * height), 1))
    if taper < 0.6:
        return "triangle", fill_ratio, taper
    return ("square" if fill_ratio > 0.88 else "circle"), fill_ratio, taper


def judge(image: Image.Image | np.ndarray) -> Judgement:
    """Read background color (border pixels), shape color and shape (pixels unlike the border) from an RGB image."""
    pixels = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {pixels.shape}")
    if pixels.max() <= 1.0:  # float images in [0, 1], as diffusers' output_type="np" gives them
        pixels = pixels * 255.0
    border = np.concatenate([pixels[:2].reshape(-1, 3), pixels[-2:].reshape(-1, 3),
                             pixels[:, :2].reshape(-1, 3), pixels[:, -2:].reshape(-1, 3)])
    background_rgb = np.median(border, axis=0)
    mask = np.linalg.norm(pixels - background_rgb, axis=2) > FOREGROUND_DISTANCE
    background = nearest_color(background_rgb)
    if mask.sum() < MIN_SHAPE_FRACTION * mask.size:
        return Judgement(background, None, None, mask, 0.0, 0.0)
    core = _erode(mask)  # skip the anti-aliased rim, whose colors are blends
    color = nearest_color(np.median(pixels[core if core.any() else mask], axis=0))
    shape, fill_ratio, taper = _classify(mask)
    return Judgement(background, color, shape, mask, fill_ratio, taper)
