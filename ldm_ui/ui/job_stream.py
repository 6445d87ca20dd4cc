"""A job's events, drained and coalesced for a browser: the newest progress and preview win, at a bounded rate.

The engine's worker never waits for the browser: it puts events on the job's queue and goes on sampling. A tab
drains that queue: each batch holds every event that was waiting, with all but the newest Progress and the
newest Preview dropped. Outputs, queue positions and terminal events go out at once; a batch of only progress
and previews goes out at most every UPDATE_INTERVAL_S, so a step of 20 ms costs the browser nothing per step.
"""

from __future__ import annotations

import queue
import time
from typing import Any, Iterator

from ldm_ui.requests import TERMINAL_EVENTS, Preview, Progress

UPDATE_INTERVAL_S = 0.2  # at most 5 progress/preview updates a second; Interrupt feedback stays well under 0.5 s
COALESCED = (Progress, Preview)


def next_event(job, timeout: float | None) -> Any:
    """The job's next event, waiting at most `timeout` seconds (0: only one already waiting); raises queue.Empty."""
    return next(job.events(timeout=timeout))


def coalesce(events: list) -> list:
    """The events in order, keeping only the newest Progress and the newest Preview (each at its own place)."""
    newest = {kind: max((i for i, e in enumerate(events) if isinstance(e, kind)), default=-1) for kind in COALESCED}
    return [e for i, e in enumerate(events) if not isinstance(e, COALESCED) or i == newest[type(e)]]


def event_batches(job, interval_s: float = UPDATE_INTERVAL_S, clock=time.monotonic) -> Iterator[list]:
    """Yield coalesced batches of the job's events until (and including) its terminal event."""
    last_sent = float("-inf")
    waiting: list = []
    while True:
        if waiting:  # only progress/previews wait: until their slot comes, or an urgent event arrives
            timeout = max(0.0, last_sent + interval_s - clock())
        else:
            timeout = None
        try:
            waiting.append(next_event(job, timeout))
            while True:  # everything else that is already there
                waiting.append(next_event(job, 0))
        except queue.Empty:
            pass
        urgent = any(not isinstance(e, COALESCED) for e in waiting)
        if urgent or clock() >= last_sent + interval_s:
            batch, waiting = coalesce(waiting), []
            last_sent = clock()
            yield batch
            if any(isinstance(e, TERMINAL_EVENTS) for e in batch):
                return
