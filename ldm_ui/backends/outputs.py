"""Outputs of remote workers are written once, by the front: the worker names the place, the front saves the PNG.

A replica's tasks call `TaskContext.save` as usual; the replica's engine plugs in `plan_save`, which writes
nothing and puts the image's place relative to the outputs folder ("txt2img/2026-12-01/1234") in `Output.path`.
The front turns each such Output into a saved one under its own outputs folder with `save_planned`, in the
front's output format and filename pattern (the infotext carries everything a pattern names).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from PIL import Image

from ldm_ui.image_saving import save_image
from ldm_ui.requests import Output, RequestError
from ldm_ui.save_options import SaveOptions


@dataclass(frozen=True)
class PlanSave:
    """The replica side: the place an image would take, relative to `outputs_dir`; nothing is written."""

    outputs_dir: Path

    def __call__(self, image: Image.Image, folder: Path, stem: str, infotext: str) -> str:
        relative = PurePosixPath(*Path(folder).relative_to(self.outputs_dir).parts)
        return str(relative / stem)


def save_planned(output: Output, outputs_dir: Path, options: SaveOptions = SaveOptions()) -> Output:
    """The front side: write a replica's image under `outputs_dir` at its planned place; the saved Output."""
    planned = PurePosixPath(output.path or "")
    if not planned.parts or planned.is_absolute() or ".." in planned.parts or len(planned.parts) < 2:
        raise RequestError(f"a worker sent an image with an invalid place {output.path!r}")
    path = save_image(output.image, outputs_dir.joinpath(*planned.parent.parts), planned.name, output.infotext,
                      options)
    return replace(output, path=str(path))
