"""The image history: every image (PNG, JPEG, WebP) under the outputs folder (all tasks), newest first, a page at a time, searchable
by prompt text; delete moves a file (and the infotext .txt saved beside it) into `<outputs>/.trash/` (same
relative path), and restore moves them back.

With logins on, the History tab passes `visible` (the signed-in user owns the file, ldm_ui/ownership.py): a page
lists, and delete/restore touch, only that user's files.

Listing stats files only; the prompt of a file is read (its PNG text chunk or EXIF, not its pixels) only when a search
needs it, and kept by path and modification time, so paging through thousands of files stays fast.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from ldm_ui.image_saving import IMAGE_SUFFIXES
from ldm_ui.metadata import parse_infotext, read_infotext
from ldm_ui.safe_paths import is_inside

TRASH = ".trash"

Visible = Callable[[Path], bool]  # whether the asking user may see (and delete) an image


class HistoryError(ValueError):
    """A history action on a file that is not (or no longer) in the outputs folder; the message names it."""


@dataclass(frozen=True)
class HistoryPage:
    paths: list[Path]
    page: int  # 1-based
    pages: int
    total: int


class History:
    def __init__(self, outputs_dir: Path):
        self.root = outputs_dir
        self._prompts: dict[tuple[str, int], str] = {}
        self._lock = threading.Lock()

    def files(self) -> list[tuple[float, Path]]:
        """(mtime, path) of every image, newest first; the trash and half-written temp files are left out."""
        found: list[tuple[float, Path]] = []
        if not self.root.is_dir():
            return found
        for folder, dirs, names in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith("."):
                    path = Path(folder) / name
                    try:
                        found.append((path.stat().st_mtime, path))
                    except FileNotFoundError:  # deleted while we looked
                        continue
        found.sort(key=lambda item: (item[0], item[1].name), reverse=True)
        return found

    def infotext(self, path: Path) -> str:
        try:
            with Image.open(path) as image:
                image.load()
                return read_infotext(image) or ""
        except OSError:
            return ""

    def prompt(self, path: Path, mtime: float) -> str:
        key = (str(path), int(mtime * 1e9))
        with self._lock:
            if key in self._prompts:
                return self._prompts[key]
        info = parse_infotext(self.infotext(path)) if path.is_file() else None
        text = f"{info.prompt}\n{info.negative_prompt}".lower() if info else ""
        with self._lock:
            self._prompts[key] = text
        return text

    def page(self, page: int = 1, per_page: int = 24, search: str = "", visible: Visible | None = None) -> HistoryPage:
        files = self.files()
        if visible is not None:
            files = [(mtime, path) for mtime, path in files if visible(path)]
        needle = search.strip().lower()
        if needle:
            files = [(mtime, path) for mtime, path in files if needle in self.prompt(path, mtime)]
        total = len(files)
        pages = max(1, -(-total // per_page))
        page = min(max(1, page), pages)
        start = (page - 1) * per_page
        return HistoryPage([path for _, path in files[start:start + per_page]], page, pages, total)

    # ---- delete and restore

    def _check(self, path: Path, root: Path) -> Path:
        path = Path(path)
        if not path.is_file() or not is_inside(path, root):
            raise HistoryError(f"{path.name} is not an image in {root}; refresh the history")
        return path

    @staticmethod
    def _check_visible(path: Path, visible: Visible | None) -> None:
        if visible is not None and not visible(path):
            raise HistoryError(f"{path.name} is not one of your images; refresh the history")

    def delete(self, path: Path, visible: Visible | None = None) -> Path:
        """Move `path` into the trash; returns where it went (for restore)."""
        path = self._check(path, self.root)
        self._check_visible(path, visible)
        if is_inside(path, self.root / TRASH):
            raise HistoryError(f"{path.name} is already in the trash")
        target = self.root / TRASH / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        _move_infotext_file(path, target)
        return target

    def restore(self, trashed: Path, visible: Visible | None = None) -> Path:
        trashed = self._check(trashed, self.root / TRASH)
        target = self.root / trashed.relative_to(self.root / TRASH)
        self._check_visible(target, visible)  # ownership is recorded by the original path
        if target.exists():
            raise HistoryError(f"{target.name} exists again in {target.parent}; not overwritten")
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(trashed, target)
        _move_infotext_file(trashed, target)
        return target


def _move_infotext_file(image: Path, moved_to: Path) -> None:
    """The `.txt` infotext saved beside an image goes where the image went (when nothing is in its way)."""
    text, target = image.with_suffix(".txt"), moved_to.with_suffix(".txt")
    if text.is_file() and not target.exists():
        os.replace(text, target)
