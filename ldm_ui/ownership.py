"""Which signed-in user's job made which file under the outputs folder, so the file route serves it only to them.

The engine saves every task's images under outputs/<task>/<date>/ with sequential names that anyone can guess.
`OutputOwners.listener` is an engine event listener: a job's `Queued` event is emitted on the thread that
submitted it, inside the Gradio event of the user who asked for it, so the user is known there; the paths of
the job's `Output`s are then recorded as theirs. Tasks that make a fresh folder per job (interpolate: frames,
GIF and MP4 together) give the user that whole folder. ldm_ui/guard.py asks `owner_of` before Gradio serves a
file from the outputs folder. Files no recorded job made (older runs, an extension's grid) are served to nobody
while logins are on; they still reach their user through the page, which gets its own cached copy.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from gradio.context import LocalContext  # read only: Gradio sets the request of every event it runs

from ldm_ui.requests import TERMINAL_EVENTS, Output, Queued

# tasks whose runner claims a new folder for each job (ldm_ui/engine/interpolate.py: new_run_folder)
RUN_FOLDER_TASKS = frozenset({"interpolate"})


def current_user() -> str | None:
    """The signed-in user of the Gradio event running on this thread, if any."""
    request = LocalContext.request.get(None)
    return getattr(request, "username", None) if request is not None else None


class OutputOwners:
    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        self._folders: dict[str, str] = {}
        self._job_users: dict[int, str] = {}
        self._lock = threading.Lock()

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
                with self._lock:
                    self._folders[_real(Path(event.path).parent)] = user
        if isinstance(event, TERMINAL_EVENTS):
            for output in getattr(event, "outputs", None) or []:
                if user is not None and output.path:
                    self.record(user, output.path)
            with self._lock:
                self._job_users.pop(job.id, None)

    def record(self, user: str, path: str | os.PathLike) -> None:
        with self._lock:
            self._files[_real(Path(path))] = user

    def owner_of(self, path: str | os.PathLike) -> str | None:
        real = _real(Path(path))
        with self._lock:
            if real in self._files:
                return self._files[real]
            for folder in Path(real).parents:
                if str(folder) in self._folders:
                    return self._folders[str(folder)]
        return None


def _real(path: Path) -> str:
    return os.path.realpath(path)
