"""X/Y plot without the UI: parse axis values, plan one request per cell, run them, draw the labeled grid."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from PIL import Image, ImageDraw, ImageFont

from ldm_ui.extensions import ExtensionApi

# label -> (request field, value type); "Nothing" leaves the axis out (a single row or column)
AXES: dict[str, tuple[str, type] | None] = {
    "Nothing": None,
    "CFG scale": ("cfg_scale", float),
    "Steps": ("steps", int),
    "Sampler": ("sampler", str),
    "Seed": ("seed", int),
    "Width": ("width", int),
    "Height": ("height", int),
}
MAX_VALUES_PER_AXIS = 16
MAX_CELLS = 64
_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*-\s*(-?\d+(?:\.\d+)?)\s*(?:\(\s*\+\s*(\d+(?:\.\d+)?)\s*\))?\s*$")


@dataclass(frozen=True)
class Cell:
    x_index: int
    y_index: int
    request: Any  # a Txt2ImgRequest


def parse_values(axis: str, text: str, api_error: type[Exception] = ValueError) -> list:
    """'3, 7, 12' or '10-30 (+10)' (numbers) or 'Euler a, DDIM' (samplers) -> values for the axis."""
    if axis not in AXES:
        raise api_error(f"unknown axis {axis!r}; choose one of: {', '.join(AXES)}")
    if AXES[axis] is None:
        return [None]
    _field, kind = AXES[axis]
    values: list = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        if kind is str:
            values.append(part)
            continue
        match = _RANGE.match(part)
        if match:
            start, end = float(match[1]), float(match[2])
            step = float(match[3] or 1)
            if step <= 0 or end < start:
                raise api_error(f"{axis}: range {part!r} must go up, like '10-30 (+10)'")
            count = int((end - start) / step + 1e-9) + 1
            if count > MAX_VALUES_PER_AXIS:
                raise api_error(f"{axis}: range {part!r} gives {count} values; the limit is {MAX_VALUES_PER_AXIS}")
            values += [kind(start + i * step) for i in range(count)]
            continue
        try:
            number = float(part)
        except ValueError:
            raise api_error(f"{axis}: {part!r} is not a number; write values like '3, 7, 12' or '10-30 (+10)'") \
                from None
        if kind is int and not number.is_integer():
            raise api_error(f"{axis}: {part!r} must be a whole number")
        values.append(kind(number))
    if not values:
        raise api_error(f"{axis}: give at least one value, like '3, 7, 12'")
    if len(values) > MAX_VALUES_PER_AXIS:
        raise api_error(f"{axis}: {len(values)} values; the limit is {MAX_VALUES_PER_AXIS}")
    return values


def plan_cells(api: ExtensionApi, base, x_axis: str, x_values: list, y_axis: str, y_values: list) -> list[Cell]:
    """One validated request per cell, row by row; a bad value raises RequestError before anything runs."""
    if len(x_values) * len(y_values) > MAX_CELLS:
        raise api.RequestError(f"the grid would have {len(x_values) * len(y_values)} images; the limit is "
                               f"{MAX_CELLS}")
    if base.seed < 0 and "Seed" not in (x_axis, y_axis):
        base = base.with_changes(seed=random.randint(0, api.MAX_SEED))  # one seed for every cell: a fair comparison
    cells = []
    for y_index, y_value in enumerate(y_values):
        for x_index, x_value in enumerate(x_values):
            changes = {}
            for axis, value in ((x_axis, x_value), (y_axis, y_value)):
                if AXES[axis] is not None:
                    changes[AXES[axis][0]] = value
            cells.append(Cell(x_index, y_index, base.with_changes(**changes)))
    return cells


def run_cells(api: ExtensionApi, cells: list[Cell], on_job: Callable[[Any], None] = lambda job: None
              ) -> Iterator[tuple[int, Any, Image.Image | None]]:
    """Run the cells through the engine one after another; yields (cell index, event, image when done)."""
    for index, cell in enumerate(cells):
        job = api.submit(cell.request)
        on_job(job)
        for event in job.events():
            if isinstance(event, api.Finished):
                yield index, event, event.outputs[0].image
            else:
                yield index, event, None


def label(axis: str, value: Any) -> str:
    if isinstance(value, float):
        value = f"{value:g}"
    return f"{axis}: {value}"


@dataclass(frozen=True)
class GridLayout:
    left: int  # width of the y label margin
    top: int  # height of the x label margin
    cell_w: int  # a column is as wide as its widest image or label, so labels never run into each other
    cell_h: int
    columns: int
    rows: int
    font: Any
    pad: int

    @property
    def size(self) -> tuple[int, int]:
        return self.left + self.cell_w * self.columns, self.top + self.cell_h * self.rows

    def image_origin(self, x: int, y: int, image_width: int) -> tuple[int, int]:
        """Top-left corner of the image in column x, row y (images are centered in their column)."""
        return self.left + x * self.cell_w + (self.cell_w - image_width) // 2, self.top + y * self.cell_h


def grid_layout(images: list[list[Image.Image]], x_labels: list[str], y_labels: list[str]) -> GridLayout:
    image_w = max(image.width for row in images for image in row)
    image_h = max(image.height for row in images for image in row)
    font = ImageFont.load_default(size=max(11, min(32, image_h // 6)))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad = max(4, font.size // 3)
    x_label_w = max((_text_size(measure, text, font)[0] for text in x_labels if text), default=0)
    x_label_h = max((_text_size(measure, text, font)[1] for text in x_labels if text), default=0)
    y_label_w = max((_text_size(measure, text, font)[0] for text in y_labels if text), default=0)
    return GridLayout(
        left=y_label_w + 2 * pad if y_label_w else 0, top=x_label_h + 2 * pad if x_label_h else 0,
        cell_w=max(image_w, x_label_w + 2 * pad if x_label_w else 0), cell_h=image_h,
        columns=len(x_labels), rows=len(y_labels), font=font, pad=pad,
    )


def make_grid(images: list[list[Image.Image]], x_labels: list[str], y_labels: list[str]) -> Image.Image:
    """Rows of images (y) by columns (x), x labels on top and y labels on the left, on white."""
    layout = grid_layout(images, x_labels, y_labels)
    font, pad = layout.font, layout.pad
    grid = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(grid)
    for x, text in enumerate(x_labels):
        width, _ = _text_size(draw, text, font)
        draw.text((layout.left + x * layout.cell_w + (layout.cell_w - width) // 2, pad), text, fill="black",
                  font=font)
    for y, text in enumerate(y_labels):
        _, height = _text_size(draw, text, font)
        draw.text((pad, layout.top + y * layout.cell_h + (layout.cell_h - height) // 2), text, fill="black",
                  font=font)
    for y, row in enumerate(images):
        for x, image in enumerate(row):
            grid.paste(image.convert("RGB"), layout.image_origin(x, y, image.width))
    return grid


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    box = draw.textbbox((0, 0), text, font=font)
    return box[2], box[3]
