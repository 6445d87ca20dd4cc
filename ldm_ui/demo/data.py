"""Procedural training data for the demo model: one shape on a plain background, drawn with Pillow.

Every scene is a 64x64 RGB image of a circle, square or triangle in one palette color on a background of
a different palette color, with jittered size, position and shade, captioned
``a {color} {shape} on a {color} background``. 8 colors x 7 backgrounds x 3 shapes = 168 combinations.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "purple": (130, 40, 170),
    "orange": (245, 140, 20),
}
COLORS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")
SHADE_JITTER = 12  # per-channel +-; small next to the smallest palette distance (red-orange, ~113)
SUPERSAMPLE = 4  # draw at 4x and downsample, so edges are anti-aliased like a real image


def caption(color: str, shape: str, background: str) -> str:
    return f"a {color} {shape} on a {background} background"


def combinations() -> list[tuple[str, str, str]]:
    """All (color, shape, background) triples with color != background, in a fixed order (168)."""
    return [(c, s, b) for c, s, b in itertools.product(COLORS, SHAPES, COLORS) if c != b]


@dataclass
class Scene:
    image: Image.Image  # 64x64 RGB
    color: str
    shape: str
    background: str
    mask: np.ndarray  # (64, 64) bool, True on the shape
    bbox: tuple[int, int, int, int]  # (left, top, right, bottom) of the mask, right/bottom exclusive

    @property
    def caption(self) -> str:
        return caption(self.color, self.shape, self.background)


def _shade(rng: np.random.Generator, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    jitter = rng.integers(-SHADE_JITTER, SHADE_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(np.array(rgb) + jitter, 0, 255))


def _outline(shape: str, cx: float, cy: float, size: float) -> list[tuple[float, float]] | tuple:
    half = size / 2
    if shape == "triangle":  # isosceles, pointing up, base = height = size
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    return (cx - half, cy - half, cx + half, cy + half)


def make_scene(rng: np.random.Generator, color: str | None = None, shape: str | None = None,
               background: str | None = None, pixels: int = SIZE) -> Scene:
    """Draw one scene; unspecified attributes are drawn from ``rng`` (the same rng state -> the same scene).

    ``pixels``: the side of the image; the scene (rng draws, geometry in 64px units) is the same at every size,
    so a 128px scene box-downsampled to 64px is the 64px scene (the demo upscaler trains on such pairs)."""
    color = color or COLORS[rng.integers(len(COLORS))]
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    if background is None:
        others = [c for c in COLORS if c != color]
        background = others[rng.integers(len(others))]
    if color == background or color not in PALETTE or background not in PALETTE or shape not in SHAPES:
        raise ValueError(f"need color != background from {COLORS} and shape from {SHAPES}, "
                         f"got {color!r}, {shape!r}, {background!r}")
    size = rng.uniform(22, 42)
    margin = size / 2 + 3
    cx, cy = rng.uniform(margin, SIZE - margin, size=2)

    zoom = SUPERSAMPLE * pixels / SIZE
    big = round(SIZE * zoom)
    outline = _outline(shape, cx * zoom, cy * zoom, size * zoom)
    mask_big = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask_big)
    {"circle": draw.ellipse, "square": draw.rectangle, "triangle": draw.polygon}[shape](outline, fill=255)
    alpha = np.asarray(mask_big.resize((pixels, pixels), Image.BOX), dtype=np.float32)[..., None] / 255.0

    fg_rgb = np.array(_shade(rng, PALETTE[color]), dtype=np.float32)
    bg_rgb = np.array(_shade(rng, PALETTE[background]), dtype=np.float32)
    pixels = np.round(alpha * fg_rgb + (1 - alpha) * bg_rgb).astype(np.uint8)
    mask = alpha[..., 0] >= 0.5
    ys, xs = np.nonzero(mask)
    bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Scene(Image.fromarray(pixels), color, shape, background, mask, bbox)


def make_dataset(count: int, seed: int) -> tuple[np.ndarray, list[Scene]]:
    """``count`` scenes cycling through all 168 combinations (balanced), deterministic in ``seed``.

    Returns the images as a uint8 array (count, 64, 64, 3) and the scenes (captions, masks, bboxes).
    """
    rng = np.random.default_rng(seed)
    combos = combinations()
    position = rng.permutation(count)
    order = position % len(combos)
    whole = count - count % len(combos)
    if whole < count:  # the last, partial cycle covers random combinations, not always the first ones
        tail = position >= whole
        order[tail] = rng.permutation(len(combos))[position[tail] - whole]
    scenes = [make_scene(rng, *combos[i]) for i in order]
    return np.stack([np.asarray(s.image) for s in scenes]), scenes
