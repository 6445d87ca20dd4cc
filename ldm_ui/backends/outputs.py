"""Outputs of remote workers are written once, by the front: the worker names the place, the front saves the file.

A replica's tasks call `TaskContext.save`, `new_run_folder` and `save_file` as usual; the replica's engine plugs in
`PlanSave` and `PlannedRunFiles`, which write nothing: an image's Output carries its place relative to the outputs
folder ("txt2img/2026-12-01/1234") in `Output.path`, a file (an interpolation's GIF or MP4) comes back as an
`UnsavedFile` with its bytes, and a run folder is a planned name (`.run-<id>-<label>`) that the front turns into a
fresh numbered folder of its own when the first file for it arrives. `FrontOutputs` (one per job) does that.
Images are written in the front's output format and filename pattern (the infotext carries everything a
pattern names).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from ldm_ui.engine.run_files import new_run_folder, write_file_atomically
from ldm_ui.image_saving import save_image
from ldm_ui.requests import Finished, Output, RequestError
from ldm_ui.results import InterpolationResult, UnsavedFile
from ldm_ui.save_options import SaveOptions

PLANNED_RUN = re.compile(r"\.run-(?P<id>[0-9a-f]{32})-(?P<label>[a-z0-9_-]{1,40})")


def relative_place(path: Path, outputs_dir: Path) -> PurePosixPath:
    return PurePosixPath(*Path(path).relative_to(outputs_dir).parts)


@dataclass(frozen=True)
class PlanSave:
    """The replica side: the place an image would take, relative to `outputs_dir`; nothing is written."""

    outputs_dir: Path

    def __call__(self, image: Image.Image, folder: Path, stem: str, infotext: str) -> str:
        return str(relative_place(folder, self.outputs_dir) / stem)


@dataclass(frozen=True)
class PlannedRunFiles:
    """The replica side of run folders and files (RunFiles): a planned folder name, and the bytes of each file."""

    outputs_dir: Path

    def new_folder(self, parent: Path, label: str) -> Path:
        return parent / f".run-{uuid.uuid4().hex}-{label}"

    def write(self, data: bytes, folder: Path, name: str) -> UnsavedFile:
        return UnsavedFile(place=str(relative_place(folder, self.outputs_dir) / name), data=data)


class FrontOutputs:
    """The front side, for one job: writes the replica's images and files under `outputs_dir` at their planned
    places, and claims one fresh numbered folder here for each planned run folder."""

    def __init__(self, outputs_dir: Path, options: SaveOptions = SaveOptions()):
        self.outputs_dir, self.options = outputs_dir, options
        self._run_folders: dict[PurePosixPath, Path] = {}  # planned run folder -> the folder claimed here

    def folder(self, planned: PurePosixPath) -> Path:
        """The front's folder for a planned one (relative to the outputs folder)."""
        if not planned.parts or planned.is_absolute() or ".." in planned.parts:
            raise RequestError(f"a worker sent a file with an invalid place {str(planned)!r}")
        run = PLANNED_RUN.fullmatch(planned.name)
        if run is None:
            return self.outputs_dir.joinpath(*planned.parts)
        if planned not in self._run_folders:
            self._run_folders[planned] = new_run_folder(self.outputs_dir.joinpath(*planned.parent.parts),
                                                        run["label"])
        return self._run_folders[planned]

    def _place(self, place: str | None) -> tuple[Path, str]:
        planned = PurePosixPath(place or "")
        if len(planned.parts) < 2:
            raise RequestError(f"a worker sent a file with an invalid place {place!r}")
        return self.folder(planned.parent), planned.name

    def image(self, output: Output) -> Output:
        """Write a replica's image at its planned place, in the front's format and pattern; the saved Output."""
        folder, stem = self._place(output.path)
        return replace(output, path=str(save_image(output.image, folder, stem, output.infotext, self.options)))

    def file(self, unsaved: UnsavedFile) -> Path:
        folder, name = self._place(unsaved.place)
        return write_file_atomically(unsaved.data, folder, name)

    def finished(self, finished: Finished, outputs: list[Output]) -> Finished:
        """The replica's Finished with the saved `outputs`, and its result's files written and named here."""
        result: Any = finished.result
        summary = finished.summary
        if isinstance(result, InterpolationResult) and isinstance(result.gif, UnsavedFile):
            planned = PurePosixPath(result.gif.place).parent
            folder = self.folder(planned)
            summary = summary.replace(str(result.folder), str(folder))
            result = replace(result, folder=folder, gif=self.file(result.gif), mp4=self.file(result.mp4))
        return replace(finished, outputs=outputs, summary=summary, result=result)


def save_planned(output: Output, outputs_dir: Path, options: SaveOptions = SaveOptions()) -> Output:
    """One replica image written under `outputs_dir` at its planned place (a job's images: FrontOutputs)."""
    return FrontOutputs(outputs_dir, options).image(output)
