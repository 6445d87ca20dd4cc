"""A job's events, drained and coalesced for a browser: the newest progress and preview win, at a bounded rate.

The engine's worker never waits for the browser: it puts events on the job's queue and goes on sampling. A tab
drains that queue: each batch holds every event that was waiting, with all but the newest Progress and the
newest Preview dropped. Progress and previews go out at most every UPDATE_INTERVAL_S; queue positions, outputs
and terminal events go out at once.

The draining thread sleeps between slots instead of waking for every step: on the CPU a tiny model's step is
mostly Python, and a thread woken 300 times a job takes the GIL from the worker each time (measured: 1.5x slower
sampling with previews every step). An engine event listener (`UrgentEvents`) wakes it early for what cannot wait.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Iterator

from ldm_ui.requests import TERMINAL_EVENTS, Preview, Progress

UPDATE_INTERVAL_S = 0.2  # at most 5 progress/preview updates a second; Interrupt feedback stays well under 0.5 s
COALESCED = (Progress, Preview)


class UrgentEvents:
    """Sets `event` when the job running `request` emits anything but progress or a preview.

        with UrgentEvents(engine, request) as urgent:
            job = engine.submit(request)
            for batch in event_batches(job, urgent.event): ...
    """

    def __init__(self, engine, request):
        self.engine, self.request = engine, request
        self.event = threading.Event()

    def __call__(self, job, event) -> None:  # called on the emitting thread: a check and a flag, nothing more
        if job.request is self.request and not isinstance(event, COALESCED):
            self.event.set()

    def __enter__(self) -> UrgentEvents:
        self.engine.event_listeners.append(self)
        return self

    def __exit__(self, *exc) -> None:
        self.engine.event_listeners.remove(self)


def coalesce(events: list) -> list:
    """The events in order, keeping only the newest Progress and the newest Preview (each at its own place)."""
    newest = {kind: max((i for i, e in enumerate(events) if isinstance(e, kind)), default=-1) for kind in COALESCED}
    return [e for i, e in enumerate(events) if not isinstance(e, COALESCED) or i == newest[type(e)]]


def drain(job) -> list:
    """Every event already waiting on the job's queue, without blocking."""
    events: list[Any] = []
    try:
        while True:
            events.append(next(job.events(timeout=0)))
    except queue.Empty:
        return events


def event_batches(job, urgent: threading.Event | None = None, interval_s: float = UPDATE_INTERVAL_S,
                  clock=time.monotonic) -> Iterator[list]:
    """Yield coalesced batches of the job's events until (and including) its terminal event."""
    urgent = urgent if urgent is not None else threading.Event()
    while True:
        urgent.clear()  # an urgent event from here on wakes the wait below
        batch = drain(job)
        if not batch:  # nothing since the last slot: wait for the next event, whatever it is
            batch = [next(job.events())] + drain(job)
        sent_at = clock()
        batch = coalesce(batch)
        yield batch
        if any(isinstance(e, TERMINAL_EVENTS) for e in batch):
            return
        remaining = sent_at + interval_s - clock()
        if remaining > 0:
            urgent.wait(remaining)
