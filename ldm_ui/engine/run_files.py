"""The files a task writes beside its PNGs (interpolation's GIF and MP4), and the fresh numbered folder a run claims.

Locally both go straight to disk (`LocalRunFiles`). An engine replica on Ray plugs in `PlannedRunFiles`
(ldm_ui/backends/outputs.py) instead, which writes nothing: the front process claims the folder and writes the
bytes under its own outputs folder, as it does with the replica's images.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def new_run_folder(parent: Path, label: str) -> Path:
    """A fresh numbered folder per run (00000-prompts, 00001-seeds, ...); mkdir without exist_ok claims it."""
    parent.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[:5]) for p in parent.iterdir() if p.name[:5].isdigit()]
    number = max(numbers, default=-1) + 1
    while True:
        folder = parent / f"{number:05d}-{label}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def write_file_atomically(data: bytes, folder: Path, name: str) -> Path:
    """Write `data` as folder/name through a temporary name and a rename, so no reader sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    fd, tmp = tempfile.mkstemp(prefix=".writing-", suffix=path.suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class LocalRunFiles:
    """Run folders and files written where the engine runs (the in-process engine)."""

    def new_folder(self, parent: Path, label: str) -> Path:
        return new_run_folder(parent, label)

    def write(self, data: bytes, folder: Path, name: str) -> Path:
        return write_file_atomically(data, folder, name)
