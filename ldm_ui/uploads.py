"""Who uploaded each file in the app's Gradio folder, which browser sessions use it, and deleting it when they end.

Gradio keeps uploads until its `delete_cache` sweep (a day here) and serves them to anyone signed in who names
the path. The gate (ldm_ui/guard.py) tells this registry:
- who uploaded what: the paths in the upload route's answer, under the signed-in user (one file may have
  several uploaders: Gradio names a file by its content, so the same image uploaded twice is one file);
- which session uses what: the upload paths in an event payload, under the payload's `session_hash`.
When a browser session ends (Gradio's `unload` event: the tab closed or reloaded, a client closed), the uploads
it used are deleted unless another open session uses them or they were uploaded more often than sessions used
them (Gradio names a file by its content, so a second upload of the same picture, not used yet, is the same
file). Those, uploads no event ever used, and files the app made itself wait for Gradio's daily sweep.
With logins on, an upload is served to, and accepted in payloads from, only the users who uploaded it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import gradio as gr

log = logging.getLogger(__name__)
PRUNE_EVERY = 1000  # uploads recorded between sweeps of entries whose file is gone (Gradio's daily sweep)
ENDED_KEPT = 1000  # ended sessions remembered for wait_ended


class UploadRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._uploaders: dict[str, set[str]] = {}  # real path -> users
        self._upload_count: dict[str, int] = {}  # real path -> upload requests that returned it
        self._user_sessions: dict[str, int] = {}  # real path -> sessions that used it
        self._sessions: dict[str, set[str]] = {}  # session hash -> real paths it used
        self._used_at: dict[tuple[str, str], float] = {}  # (session hash, real path) -> when it last used it
        self._released = threading.Condition(self._lock)
        self._ended: dict[str, None] = {}  # insertion-ordered: the oldest are dropped first
        self._recorded = 0

    def uploaded(self, user: str, paths: list[str]) -> None:
        with self._lock:
            for path in paths:
                real = os.path.realpath(path)
                self._uploaders.setdefault(real, set()).add(user)
                self._upload_count[real] = self._upload_count.get(real, 0) + 1
            self._recorded += len(paths)
            if self._recorded >= PRUNE_EVERY:
                self._recorded = 0
                for gone in [p for p in self._uploaders if not os.path.exists(p)]:
                    self._forget(gone)

    def used(self, session_hash: str, paths: list[str]) -> None:
        with self._lock:
            self._ended.pop(session_hash, None)
            mine = self._sessions.setdefault(session_hash, set())
            now = time.time()
            for real in {os.path.realpath(p) for p in paths}:
                self._used_at[(session_hash, real)] = now
                if real not in mine:
                    mine.add(real)
                    self._user_sessions[real] = self._user_sessions.get(real, 0) + 1

    def uploaders(self, path: str) -> set[str] | None:
        """The users who uploaded this file; None when it is no upload this registry saw (e.g. a result copy)."""
        with self._lock:
            found = self._uploaders.get(os.path.realpath(path))
            return set(found) if found is not None else None

    def end_session(self, session_hash: str) -> list[str]:
        """Delete the files this session used that no other open session uses; returns the deleted paths."""
        with self._lock:
            mine = self._sessions.pop(session_hash, set())
            used_at = {p: self._used_at.pop((session_hash, p), 0.0) for p in mine}
            still_used = set().union(*self._sessions.values()) if self._sessions else set()
            # a file written after this session last used it is a new upload of the same picture (Gradio names
            # files by content) whose registration may still be on its way: it stays
            gone = sorted(p for p in mine - still_used
                          if 1 <= self._upload_count.get(p, 0) <= self._user_sessions.get(p, 0)
                          and not _written_after(p, used_at[p]))
            for path in gone:
                self._forget(path)
        for path in gone:
            _delete(Path(path))
        if gone:
            log.info("session ended: deleted %d uploaded file(s)", len(gone))
        with self._lock:
            self._ended[session_hash] = None
            while len(self._ended) > ENDED_KEPT:
                del self._ended[next(iter(self._ended))]
            self._released.notify_all()
        return gone

    def _forget(self, path: str) -> None:
        self._uploaders.pop(path, None)
        self._upload_count.pop(path, None)
        self._user_sessions.pop(path, None)

    def wait_ended(self, session_hash: str, timeout: float) -> bool:
        """Block until `end_session(session_hash)` has run (for callers that end a session and check the files)."""
        with self._lock:
            return self._released.wait_for(lambda: session_hash in self._ended, timeout)


def delete_on_session_end(demo: gr.Blocks, registry: UploadRegistry) -> None:
    """Run `registry.end_session` on Gradio's unload event (the tab closed or reloaded, a client closed).

    Call it inside `with demo:` (build_ui does): every time a Blocks' outermost `with` exits, Gradio rebuilds the
    whole config and web app, about 0.3 s for ours."""

    def end_session(request: gr.Request) -> None:
        registry.end_session(request.session_hash)

    demo.unload(end_session)


def _written_after(path: str, moment: float) -> bool:
    try:
        return os.stat(path).st_mtime > moment
    except OSError:
        return False


def _delete(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as error:
        log.warning("could not delete upload %s: %s", path.name, error)
        return
    try:
        path.parent.rmdir()  # Gradio puts each upload in a folder named by its content hash
    except OSError:
        pass
