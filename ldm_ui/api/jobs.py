"""The API's jobs: who started which, their latest progress and live preview, interrupt and skip.

An engine event listener keeps the latest Progress and Preview of every running job (plain dict writes: it runs
on the worker thread, so it stays quick and takes no lock). Each API job is owned by the login that started
it; /progress, /interrupt and /skip act on the caller's own jobs only, never on another user's or a browser's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image

from ldm_ui.api.results import png_base64
from ldm_ui.requests import (
    TERMINAL_EVENTS, Cancelled, Failed, Finished, Output, Preview, Progress, Queued, Request, Started,
)


@dataclass
class JobView:
    """What the listener has seen of one job so far."""

    started_at: float | None = None
    queued_position: int | None = None
    progress: Progress | None = None
    preview: Preview | None = None


@dataclass
class ApiJob:
    job: Any  # ldm_ui.engine.engine.Job
    user: str | None
    task_id: str
    submitted_at: float = field(default_factory=time.time)
    interrupted: bool = False
    skipped: bool = False


@dataclass(eq=False)
class Subscriber:
    """A /stream client: events of the task it names reach its asyncio queue through its loop."""

    task_id: str
    user: str | None
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def push(self, item: tuple[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)  # quick, from any thread


class JobFailedError(RuntimeError):
    """The engine reported Failed; the message is the engine's (out of memory, disk full, unknown LoRA, ...)."""


class ApiJobs:
    def __init__(self, engine):
        self.engine = engine
        self._views: dict[int, JobView] = {}
        self._jobs: dict[int, ApiJob] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()  # guards _jobs and _subscribers; the listener only reads them
        engine.event_listeners.append(self.on_event)

    # ---- the listener (worker thread: dict writes only)

    def on_event(self, job, event) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            self._views.pop(job.id, None)
            return  # run() tells subscribers how the job ended, with everything it made
        api_job = self._jobs.get(job.id)
        if api_job is not None and isinstance(event, (Queued, Progress, Preview, Output)):
            self._notify(api_job, ("event", event))
        view = self._views.get(job.id)
        if view is None:
            view = self._views.setdefault(job.id, JobView())
        if isinstance(event, Preview):
            view.preview = event
        elif isinstance(event, Progress):
            if event.steps:  # status-only events (loading a model) carry no steps
                view.progress = event
        elif isinstance(event, Started):
            view.started_at = time.time()
        elif isinstance(event, Queued):
            view.queued_position = event.position

    # ---- running a request for a caller

    def settle(self, request: Request) -> None:
        """Run a settings request (a model or VAE switch) through the queue and wait for it; a failure raises."""
        for event in self.engine.submit(request).events():
            if isinstance(event, Finished):
                return
            if isinstance(event, (Failed, Cancelled)):
                raise JobFailedError(event.message)

    def run(self, request: Request, user: str | None, task_id: str | None = None, then: Sequence[Request] = (),
            notes: list[str] | None = None) -> tuple[list[Output], bool]:
        """Submit, wait, and return (outputs, interrupted). Outputs made before an interrupt are kept.

        `then`: requests queued right behind the job (putting the previous model back); they run however the job
        ends, and are waited for before this returns; a failure among them is added to `notes`.
        """
        job = self.engine.submit(request)
        followers = [self.engine.submit(follower) for follower in then]
        api_job = ApiJob(job=job, user=user, task_id=task_id or f"task({job.id})")
        with self._lock:
            self._jobs[job.id] = api_job
        view = self._views.get(job.id)
        self._notify(api_job, ("event", Queued(position=(view.queued_position or 0) if view else 0)))
        outputs: list[Output] = []
        ending: tuple[str, Any] = ("failed", "the job ended without a result")
        try:
            for event in job.events():
                if isinstance(event, Output):
                    outputs.append(event)
                elif isinstance(event, Finished):
                    outputs = event.outputs
                    ending = ("done", outputs)
                    return outputs, False
                elif isinstance(event, Cancelled):
                    ending = ("cancelled", outputs)
                    return outputs, True
                elif isinstance(event, Failed):
                    ending = ("failed", event.message)
                    raise JobFailedError(event.message)
        finally:
            with self._lock:
                self._jobs.pop(job.id, None)
            self._notify(api_job, ending)
            for follower in followers:
                last = list(follower.events())[-1]
                if isinstance(last, (Failed, Cancelled)) and notes is not None:
                    notes.append(f"{follower.request.task} after the job: {last.message}")
        raise AssertionError("a job's events end with a terminal event")

    # ---- /stream subscribers

    def subscribe(self, task_id: str, user: str | None) -> Subscriber:
        subscriber = Subscriber(task_id, user, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.setdefault(task_id, []).append(subscriber)
            running = next((j for j in self._jobs.values() if j.task_id == task_id and j.user == user), None)
        if running is not None:  # joined late: start from what is known now
            view = self._views.get(running.job.id) or JobView()
            for event in (view.progress, view.preview):
                if event is not None:
                    subscriber.push(("event", event))
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            listeners = self._subscribers.get(subscriber.task_id, [])
            if subscriber in listeners:
                listeners.remove(subscriber)
            if not listeners:
                self._subscribers.pop(subscriber.task_id, None)

    def is_known(self, task_id: str, user: str | None) -> bool:
        with self._lock:
            return any(j.task_id == task_id and j.user == user for j in self._jobs.values())

    def _notify(self, api_job: ApiJob, item: tuple[str, Any]) -> None:
        for subscriber in list(self._subscribers.get(api_job.task_id, ())):
            if subscriber.user == api_job.user:  # a task id is no key to another user's images
                subscriber.push(item)

    def _own(self, user: str | None) -> list[ApiJob]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.user == user), key=lambda j: j.job.id)

    def current(self, user: str | None) -> tuple[ApiJob | None, JobView | None, int]:
        """The caller's running job (else the first queued one), what is known of it, and how many jobs they have."""
        own = self._own(user)
        running = [j for j in own if (self._views.get(j.job.id) or JobView()).started_at is not None]
        chosen = (running or own or [None])[0]
        view = self._views.get(chosen.job.id) if chosen else None
        return chosen, view, len(own)

    def stop(self, user: str | None, skip: bool = False) -> int:
        """Interrupt the caller's running jobs, or with `skip` end the image being sampled and go on."""
        count = 0
        for api_job in self._own(user):
            view = self._views.get(api_job.job.id)
            if view is not None and view.started_at is not None and not api_job.job.done.is_set():
                if skip:
                    api_job.skipped = True
                    api_job.job.skip()
                else:
                    api_job.interrupted = True
                    api_job.job.cancel()
                count += 1
        return count

    # ---- /progress

    def progress(self, user: str | None, with_image: bool) -> dict[str, Any]:
        api_job, view, count = self.current(user)
        state = {"skipped": False, "interrupted": False, "stopping_generation": False, "job": "",
                 "job_count": count, "job_timestamp": "0", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
        if api_job is None:
            return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None,
                    "current_task": None}
        view = view or JobView()
        progress = view.progress
        state.update(job=api_job.task_id, interrupted=api_job.interrupted, skipped=api_job.skipped,
                     job_timestamp=time.strftime("%Y%m%d%H%M%S", time.localtime(api_job.submitted_at)))
        textinfo = "Waiting..." if view.started_at is None else "Starting..."
        fraction, eta = 0.0, 0.0
        if view.started_at is None and view.queued_position is not None:
            textinfo = f"In queue: {view.queued_position} job(s) ahead"
        if progress is not None:
            state.update(job_no=progress.batch_index, sampling_step=progress.step, sampling_steps=progress.steps)
            state["job_count"] = max(count, progress.batch_count)
            fraction, eta = progress.fraction, progress.eta_s
            textinfo = f"Step {progress.step}/{progress.steps}, {progress.unit} {progress.batch_index + 1}/" \
                       f"{progress.batch_count}"
        image = _preview_image(view.preview) if with_image else None
        return {"progress": round(fraction, 4), "eta_relative": round(eta, 3), "state": state,
                "current_image": png_base64(image) if image is not None else None, "textinfo": textinfo,
                "current_task": api_job.task_id}


def _preview_image(preview: Preview | None) -> Image.Image | None:
    return preview.image if preview is not None else None
