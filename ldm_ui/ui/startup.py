"""The first model load, run through the engine's queue while the page is already being served.

app.py creates it with the UI and submits it once the server answers (torch and diffusers are first imported by
this load, on the engine's worker); the header shows "Loading model …" until it ends, and jobs submitted meanwhile
wait behind it in the same queue (their status says so).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from ldm_ui.requests import TERMINAL_EVENTS, Failed, LoadModelRequest


class StartupLoad:
    def __init__(self, engine, model: str, submit: bool = True):
        self.model = model
        self.outcome = None  # the load job's terminal event
        self.done = threading.Event()
        self._request = LoadModelRequest(model=model)
        self.engine = engine
        self.job = None
        if submit:
            self.submit()

    def submit(self) -> None:
        """Queue the load (once); `wait` and `error` answer for it from then on."""
        if self.job is not None:
            return
        self.engine.event_listeners.append(self._listen)  # before submit: a load can end before submit returns
        try:
            self.job = self.engine.submit(self._request)
        except Exception:
            self.engine.event_listeners.remove(self._listen)
            raise

    def _listen(self, job, event) -> None:
        if job.request is self._request and isinstance(event, TERMINAL_EVENTS):
            self.outcome = event
            self.done.set()
            self.engine.event_listeners.remove(self._listen)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def error(self) -> str | None:
        """The failure message, once the load has ended in failure (or was cancelled)."""
        if not self.done.is_set() or not isinstance(self.outcome, TERMINAL_EVENTS):
            return None
        if isinstance(self.outcome, Failed):
            return self.outcome.message
        return None if type(self.outcome).__name__ == "Finished" else self.outcome.message


def guess_native_size(engine, model: str, fallback: int = 512) -> int:
    """A diffusers folder's native size from its configs (UNet sample size x VAE downscale), without loading it;
    else `fallback`. The sizes are set again from the loaded model if the guess was wrong."""
    try:
        entry = engine.models.resolve(model)
        folder = Path(entry.location)
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)
    except Exception:  # noqa: BLE001 - single files, hub ids, odd configs: the load will tell
        return fallback
