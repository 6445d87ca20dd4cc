"""The one in-process backend: a worker thread owns all torch work; callers submit requests and read events."""

from __future__ import annotations

import errno
import gc
import itertools
import logging
import queue
import threading
import traceback
from typing import Any, Callable, Iterator

from ldm_ui.config import AppConfig
from ldm_ui.engine.context import (  # noqa: F401 - re-exported
    EngineHooks, HasHooks, JobCancelled, RunFiles, SaveImage, StepInfo, TaskContext,
)
from ldm_ui.engine.models import LoadedModel, ModelManager
from ldm_ui.engine.upscalers import UpscalerLibrary
from ldm_ui.engine.registry import task_for
from ldm_ui.engine.samplers import SamplerMismatch
from ldm_ui.engine.vae_choice import vae_for_job
from ldm_ui.prompts.embeddings import EmbeddingLibrary
from ldm_ui.requests import (
    TERMINAL_EVENTS, Cancelled, Failed, Finished, GenerationRequest, LoadModelRequest, Progress, Queued, Request,
    RequestError, Started,
)

log = logging.getLogger(__name__)


class JobFailed(RuntimeError):
    """Raised by Job.wait() when the job ended with a Failed event."""


EventListener = Callable[["Job", Any], None]  # sees every event of every job (progress pages, the HTTP API)


class Job:
    """One submitted request: a stream of events and a cancel switch, private to whoever submitted it."""

    _ids = itertools.count(1)

    def __init__(self, request: Request, listeners: list[EventListener] | None = None,
                 on_cancel: Callable[[Job], None] | None = None):
        self.id = next(self._ids)
        self.request = request
        self._listeners = listeners if listeners is not None else []
        self._on_cancel = on_cancel
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._skip = threading.Event()
        self.done = threading.Event()

    def cancel(self) -> None:
        """Interrupt: a running job stops within a step; a queued one leaves the queue at once."""
        self._cancel.set()
        if self._on_cancel is not None:
            self._on_cancel(self)

    def skip(self) -> None:
        """End the image (batch, or interpolation frame) being sampled and go on with the next."""
        self._skip.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def skip_requested(self) -> bool:
        return self._skip.is_set()

    def take_skip(self) -> bool:
        """True once per skip request: the task has acted on it."""
        if self._skip.is_set():
            self._skip.clear()
            return True
        return False

    def emit(self, event: Any) -> None:
        self._events.put(event)
        for listener in list(self._listeners):
            try:
                listener(self, event)
            except Exception:  # noqa: BLE001 - an observer must never break a job
                log.exception("event listener %r failed", listener)
        if isinstance(event, TERMINAL_EVENTS):
            self.done.set()

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Yield events until the terminal one (included). `timeout` bounds the wait for each event."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, TERMINAL_EVENTS):
                return

    def wait(self, timeout: float | None = None) -> Finished:
        for event in self.events(timeout):
            if isinstance(event, Finished):
                return event
            if isinstance(event, Failed):
                raise JobFailed(event.message)
            if isinstance(event, Cancelled):
                raise JobCancelled(event.message)
        raise AssertionError("unreachable")


class Engine(HasHooks):
    """Owns the model and a queue of jobs. Start it explicitly; nothing runs at import."""

    concurrency = 1  # jobs it runs at once (EngineBackend)

    def __init__(self, config: AppConfig, models: ModelManager | None = None, save_image: SaveImage | None = None,
                 run_files: RunFiles | None = None):
        self.config = config
        self._save_image = save_image  # None: tasks write their PNGs under config.outputs_dir
        self._run_files = run_files  # None: tasks write their run folders and animations there too
        self.models = models or ModelManager(config)
        self.upscalers = UpscalerLibrary(config, config.device)  # loads nothing until used
        self.hooks = EngineHooks()  # what extensions add: step hooks, prompt transforms, ControlNet preprocessors
        # observers of every job's events, called on the emitting thread: keep them quick and never blocking
        self.event_listeners: list[EventListener] = []
        # textual inversions in models/embeddings and --embeddings-dir, re-read when a file changes
        self.embeddings = EmbeddingLibrary(config.embedding_dirs())
        self._pending: list[Job] = []
        self._running: Job | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    # ---- lifecycle

    def start(self) -> Engine:
        with self._cond:
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name="ldm-ui-engine", daemon=True)
                self._thread.start()
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            for job in self._pending:
                job.cancel()
            if self._running:
                self._running.cancel()
            self._cond.notify_all()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    # ---- submitting

    def submit(self, request: Request) -> Job:
        """Queue a request. Raises RequestError at once for an unknown request type or model."""
        if task_for(request).requires_model:  # unknown request types fail here, not on the worker
            self.models.resolve(request.model)
        if getattr(request, "refiner", None) is not None:  # an unknown refiner name, too
            self.models.resolve(request.refiner.checkpoint)
        job = Job(request, self.event_listeners, on_cancel=self._withdraw)
        with self._cond:
            if self._thread is None:
                raise RuntimeError("the engine is not started; call Engine.start() first")
            self._pending.append(job)
            job.emit(Queued(position=len(self._pending) - 1 + (1 if self._running else 0)))
            self._cond.notify_all()
        return job

    def _withdraw(self, job: Job) -> None:
        """A cancelled job that has not started leaves the queue now; the jobs behind it move up."""
        with self._cond:
            if job not in self._pending:
                return
            index = self._pending.index(job)
            self._pending.remove(job)
            job.emit(Cancelled("removed from the queue"))
            ahead = 1 if self._running else 0
            for position, waiting in enumerate(self._pending[index:], start=index):
                waiting.emit(Queued(position=position + ahead))

    def generate(self, request: GenerationRequest, timeout: float | None = None) -> Finished:
        """Submit and wait: the short way for tests, scripts and the HTTP API."""
        job = self.submit(request)
        job.done.wait(timeout)  # one wake-up at the end, not one per step event (those contend for the GIL)
        return job.wait(0)  # the events are all there (or, after a timeout, queue.Empty as before)

    def switch_model(self, name: str, timeout: float | None = None) -> LoadedModel:
        """Load a model through the queue, after the jobs already waiting, and return it."""
        self.submit(LoadModelRequest(model=name)).wait(timeout)
        return self.models.current

    @property
    def queue_length(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._running else 0)

    # ---- the worker

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    for job in self._pending:
                        job.emit(Cancelled("the app is shutting down"))
                    self._pending.clear()
                    return
                job = self._pending.pop(0)
                self._running = job
                for position, waiting in enumerate(self._pending):
                    waiting.emit(Queued(position=position + 1))
            try:
                self._run(job)
            finally:
                with self._cond:
                    self._running = None

    def _run(self, job: Job) -> None:
        if job.cancel_requested:
            job.emit(Cancelled("interrupted before it started"))
            return
        job.emit(Started())
        task = task_for(job.request)
        loading = task.requires_model
        try:
            loaded = None
            if task.requires_model:
                loaded = self.models.get(job.request.model, report=lambda message: job.emit(_status(message)))
            # txt2img/img2img: the SDXL refiner beside it, or none (which frees a held one)
            refiner = self.models.refiner.for_request(job.request, loaded, lambda message: job.emit(_status(message)))
            loading = False
            extra = {"save_image": self._save_image} if self._save_image else {}
            if self._run_files:
                extra["run_files"] = self._run_files
            # a generation request's own VAE, for this job only (SetVaeRequest's `vae` is a choice that stays)
            job_vae = job.request.vae if isinstance(job.request, GenerationRequest) else None
            with vae_for_job(loaded, job_vae, self.config):
                outcome = task.run(TaskContext(job, job.request, loaded, self.config, self.hooks,
                                               embeddings=self.embeddings, upscalers=self.upscalers,
                                               refiner=refiner, **extra))
        except JobCancelled as stop:
            outcome = Cancelled(str(stop) or "interrupted")
        except (RequestError, SamplerMismatch) as error:
            outcome = Failed(str(error))
        except Exception as error:  # noqa: BLE001 - the worker must survive any job
            outcome = Failed(describe_failure(error, job.request, loading))
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
        if not isinstance(outcome, Finished):
            # an unwound job can leave tensors in reference cycles through its traceback: free them before the
            # caller hears about the failure and submits the next job
            release_memory()
        job.emit(outcome)


def release_memory() -> None:
    """Collect cycles and hand cached GPU memory back; costs ~0.3 s with torch loaded, so not after every job."""
    from ldm_ui.engine.devices import empty_device_caches  # torch is loaded by the time a job ends

    gc.collect()
    empty_device_caches()


def _status(message: str) -> Progress:
    return Progress(step=0, steps=0, batch_index=0, batch_count=1, it_per_s=0.0, eta_s=0.0, message=message)


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":  # torch's, on any device
        return True
    text = str(error).lower()
    return "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text


def describe_failure(error: BaseException, request: Request, loading: bool = False) -> str:
    if is_out_of_memory(error) and loading:
        return (f"out of memory while loading model {getattr(request, 'model', None) or 'the default model'}; memory "
                "was released. Restart with --medvram (or --lowvram on 4 GB cards), or pick a smaller model.")
    if is_out_of_memory(error):
        width, height = getattr(request, "width", None), getattr(request, "height", None)
        size = f"{width}x{height}" if width and height else "the model's native size"
        return (
            f"out of memory while generating {getattr(request, 'batch_size', 1)} image(s) at {size}; "
            "memory was released. "
            "Try a smaller size or batch size, or restart with --medvram (or --lowvram on 4 GB cards)."
        )
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return (
            f"the disk is full: the image could not be saved ({error.strerror or error}); nothing half-written "
            "was left behind. Free some space (or restart with --outputs-dir on another disk) and generate again."
        )
    return f"{type(error).__name__}: {error}"
