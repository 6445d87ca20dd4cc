"""Which signed-in user's job made which file under the outputs folder, so the file route serves it only to them.

The engine saves every task's images under outputs/<task>/<date>/ with sequential names that anyone can guess.
`OutputOwners.listener` is an engine event listener: a job's `Queued` event is emitted on the thread that
submitted it, inside the Gradio event of the user who asked for it, so the user is known there; the paths of
the job's `Output`s are then recorded as theirs. Tasks that make a fresh folder per job (interpolate: frames,
GIF and MP4 together) give the user that whole folder. ldm_ui/guard.py asks `owner_of` before Gradio serves a
file from the outputs folder, and the History tab (ldm_ui/ui/history.py) lists only the asking user's files.
Files no recorded job made (older runs, an extension's grid) are served to nobody while logins are on; they
still reach their user through the page, which gets its own cached copy.

With a `store` file (app.py: `<cache_dir>/output-owners.jsonl`) every record is appended there as one JSON line
and read back at start, so a user's history survives a restart.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable

from gradio.context import LocalContext  # read only: Gradio sets the request of every event it runs

from ldm_ui.requests import TERMINAL_EVENTS, Output, Queued

# tasks whose runner claims a new folder for each job (TaskContext.new_run_folder, ldm_ui/engine/run_files.py)
RUN_FOLDER_TASKS = frozenset({"interpolate"})

OWNERS_FILE = "output-owners.jsonl"  # in the app's data folder (config.cache_dir)

log = logging.getLogger(__name__)


def current_user() -> str | None:
    """The signed-in user of the Gradio event running on this thread, if any."""
    request = LocalContext.request.get(None)
    return getattr(request, "username", None) if request is not None else None


class OutputOwners:
    def __init__(self, store: Path | None = None) -> None:
        self._files: dict[str, str] = {}
        self._folders: dict[str, str] = {}
        self._job_users: dict[int, str] = {}
        self._lock = threading.Lock()
        self._store = store
        if store is not None:
            self._load(store)

    def _load(self, store: Path) -> None:
        try:
            lines = store.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as error:
            log.warning("could not read the output owners from %s (%s); earlier outputs belong to nobody",
                        store, error)
            return
        for number, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                path, user, kind = str(entry["path"]), str(entry["user"]), entry.get("kind", "file")
            except (ValueError, KeyError, TypeError):
                log.warning("%s line %d is not an owner record; skipped", store, number)
                continue
            (self._folders if kind == "folder" else self._files)[path] = user

    def _append(self, path: str, user: str, kind: str) -> None:
        """Called under the lock."""
        if self._store is None:
            return
        try:
            self._store.parent.mkdir(parents=True, exist_ok=True)
            with self._store.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"path": path, "user": user, "kind": kind}) + "\n")
        except OSError as error:
            log.warning("could not record the owner of %s in %s (%s)", path, self._store, error)

    def listener(self, job, event) -> None:
        """For Engine.event_listeners."""
        if isinstance(event, Queued):
            user = current_user()
            if user is not None:
                with self._lock:
                    self._job_users[job.id] = user
            return
        with self._lock:
            user = self._job_users.get(job.id)
        if user is not None and isinstance(event, Output) and event.path:
            self.record(user, event.path)
            if getattr(type(job.request), "task", None) in RUN_FOLDER_TASKS:
                folder = _real(Path(event.path).parent)
                with self._lock:
                    if self._folders.get(folder) != user:
                        self._folders[folder] = user
                        self._append(folder, user, "folder")
        if isinstance(event, TERMINAL_EVENTS):
            for output in getattr(event, "outputs", None) or []:
                if user is not None and output.path:
                    self.record(user, output.path)
            with self._lock:
                self._job_users.pop(job.id, None)

    def record(self, user: str, path: str | os.PathLike) -> None:
        real = _real(Path(path))
        with self._lock:
            if self._files.get(real) != user:  # a job's Output and Finished name the same file
                self._files[real] = user
                self._append(real, user, "file")

    def owner_of(self, path: str | os.PathLike) -> str | None:
        real = _real(Path(path))
        with self._lock:
            if real in self._files:
                return self._files[real]
            for folder in Path(real).parents:
                if str(folder) in self._folders:
                    return self._folders[str(folder)]
        return None


    def visible_to(self, user: str) -> Callable[[Path], bool]:
        """Whether `user` owns a path, for checking many at once (a History page): the records are read once and
        each folder is resolved once, not every file (a symlinked file then matches nothing: it fails closed)."""
        with self._lock:
            files = {path for path, owner in self._files.items() if owner == user}
            folders = {path for path, owner in self._folders.items() if owner == user}
        resolved: dict[str, tuple[str, bool]] = {}  # folder as listed -> (its real path, inside a run folder)

        def visible(path: Path) -> bool:
            path = Path(path)
            listed = str(path.parent)
            if listed not in resolved:
                real = _real(path.parent)
                resolved[listed] = (real, any(folder in folders for folder in (real, *map(str, Path(real).parents))))
            real_parent, in_run_folder = resolved[listed]
            return in_run_folder or os.path.join(real_parent, path.name) in files

        return visible


def _real(path: Path) -> str:
    return os.path.realpath(path)
