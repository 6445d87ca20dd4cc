"""RayEngine: the engine interface in front of engine replicas on Ray Serve (`python app.py --backend ray`).

The front keeps what the UI and the HTTP API see: Job objects, the waiting line and queue positions, the model
list, and the outputs folder (it writes every image and file once; replicas only return them). Ray Serve does the
rest: routing with strict model affinity (a request router of ours, ldm_ui/backends/routing.py, keyed on the
multiplexed model id), streaming events back, cancelling on Interrupt, replacing a replica that dies. The front
talks to Serve through a DeploymentHandle, and sends Skip through a small actor of its own (backends/signals.py).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any

from ldm_ui.backends.outputs import FrontOutputs
from ldm_ui.config import PROJECT_ROOT, AppConfig, ConfigError
from ldm_ui.engine.context import EngineHooks, HasHooks
from ldm_ui.engine.engine import Job
from ldm_ui.engine.models import ModelManager
from ldm_ui.engine.upscalers import UpscalerLibrary
from ldm_ui.prompts.embeddings import EmbeddingLibrary
from ldm_ui.requests import (
    TERMINAL_EVENTS, Cancelled, Failed, Finished, LoadModelRequest, Output, Progress, Queued,
    Request, RequestError, Started,
)

log = logging.getLogger(__name__)

APP_NAME = "ldm-ui"
WORKER_LOST = "worker lost; retry"
INSTALL_HINT = "the ray backend needs Ray Serve: pip install 'ray[serve]==2.60.0' (or pip install -r requirements.txt)"


# Serve's router is tuned for web requests that take milliseconds: it gives a replica 0.1 s to say how busy it is
# before it tries again. Our jobs take seconds, and a busy front (or a loaded machine) can miss 0.1 s, which only
# delays routing (model affinity stays strict: ldm_ui/backends/routing.py). These defaults (set before Serve is
# first imported; the environment still overrides them) wait longer.
ROUTER_DEFAULTS = {
    "RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "1.0",
    "RAY_SERVE_MAX_QUEUE_LENGTH_RESPONSE_DEADLINE_S": "5.0",
}


def import_serve():
    """Ray Serve, or a RequestError saying which package to install."""
    for name, value in ROUTER_DEFAULTS.items():
        os.environ.setdefault(name, value)
    try:
        import ray
        from ray import serve
    except ImportError as error:
        raise RequestError(f"{INSTALL_HINT} ({error})") from None
    return ray, serve


def connect(address: str | None = None, **ray_init) -> bool:
    """Start a local Ray instance (address None) or join a cluster, unless this process already has; True if
    this call started or joined it. Replicas import ldm_ui from this checkout (every machine at the same path)."""
    ray, _ = import_serve()
    if ray.is_initialized():
        return False
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_DISABLE_TELEMETRY"):
        if name in os.environ:
            env[name] = os.environ[name]
    ray.init(address=address, runtime_env={"env_vars": env}, **ray_init)
    return True


class RemoteModels:
    """The model list (read from the models folder, which the replicas share) and the model last switched to."""

    def __init__(self, config: AppConfig):
        self._catalog = ModelManager(config)  # lists and resolves names; never loads anything on the front
        self.current = None  # a ModelSummary from the replica that loaded it

    def list_models(self):
        return self._catalog.list_models()

    def model_names(self) -> list[str]:
        return self._catalog.model_names()

    def resolve(self, name: str | None):
        return self._catalog.resolve(name)

    def set_current(self, summary) -> None:
        if summary != self.current:  # the same model again keeps the same object (the UI compares identity)
            self.current = summary


class RemoteJob(Job):
    """A Job whose work runs on a replica (`worker` names it once it runs)."""

    def __init__(self, request: Request, listeners: list, on_cancel, on_skip):
        super().__init__(request, listeners, on_cancel=on_cancel)
        self.key = uuid.uuid4().hex  # names the job to the replica that runs it (JobSignals), across fronts
        self.worker: str | None = None  # the replica's Ray actor name, once it runs there
        self._on_skip = on_skip

    def skip(self) -> None:
        """End the image being sampled on the replica and go on with the next (through JobSignals)."""
        if not self.done.is_set():
            self._on_skip(self)


class RayEngine(HasHooks):
    """Engine replicas on Ray Serve behind the EngineBackend interface (see ldm_ui/backends/interface.py)."""

    def __init__(self, config: AppConfig, ray_init: dict | None = None):
        if config.replicas < 1:
            raise RequestError(f"--replicas must be 1 or more, got {config.replicas}")
        self.config = config
        self.models = RemoteModels(config)
        # the front's extensions register here (their tabs submit through this engine); every replica loads the
        # same extensions itself, and their hooks run there, on the jobs (docs/scale-out.md)
        self.hooks = EngineHooks()
        # the front lists the embeddings for the pickers; each replica reads the same folders for its jobs
        self.embeddings = EmbeddingLibrary(config.embedding_dirs())
        self.upscalers = UpscalerLibrary(config)  # listed here for the pickers; the replicas run them
        self.event_listeners: list = []
        self.concurrency = config.replicas
        self._ray_init = ray_init or {}
        self._lock = threading.Lock()
        self._waiting: list[Job] = []  # submitted, not yet started on a replica (in submission order)
        self._running: set[Job] = set()
        self._responses: dict[int, Any] = {}  # job id -> its DeploymentResponseGenerator
        self._positions: dict[int, int] = {}  # job id -> the queue position it was last told
        self._handle = None
        self._signals = None  # the JobSignals actor: skips reach the replicas through it
        self._started_ray = False

    # ---- lifecycle

    def start(self, startup_model: str | None = None) -> RayEngine:
        if self._handle is not None:
            return self
        ray, serve = import_serve()
        self._started_ray = connect(self.config.ray_address, **self._ray_init)
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if not self.config.replicas_cpu and gpus < self.config.replicas:
            raise ConfigError(f"--replicas {self.config.replicas} needs {self.config.replicas} GPU(s), one per "
                              f"replica, and the Ray cluster has {gpus}: lower --replicas, add machines with GPUs "
                              "to the cluster, or pass --replicas-cpu to run the replicas on CPUs")
        serve.start(proxy_location="Disabled")  # no HTTP proxy: the front calls the replicas through a handle
        from ray.serve.config import RequestRouterConfig

        from ldm_ui.backends.replica import EngineReplica, replica_config
        from ldm_ui.backends.routing import ModelAffinityRouter
        from ldm_ui.backends.signals import JobSignals

        model = self.models.resolve(startup_model or self.config.default_model).name
        gpu = not self.config.replicas_cpu
        deployment = serve.deployment(
            EngineReplica, name="engine", num_replicas=self.config.replicas,
            max_ongoing_requests=1,  # one job per replica at a time; the rest wait in Serve's router
            ray_actor_options={"num_gpus": 1 if gpu else 0, "num_cpus": 0 if gpu else 1},
            # strict model affinity (ldm_ui/backends/routing.py), through Serve's public request-router API
            request_router_config=RequestRouterConfig(request_router_class=ModelAffinityRouter,
                                                      request_router_kwargs={"startup_model": model}),
        )
        self._signals = JobSignals.remote()
        handle = serve.run(deployment.bind(replica_config(self.config), model, self._signals), name=APP_NAME,
                           route_prefix=None)
        self._handle = handle.options(stream=True)
        self._status_handle = handle
        return self

    def shutdown(self, timeout: float = 30.0) -> None:
        with self._lock:
            jobs = list(self._waiting) + list(self._running)
        for job in jobs:
            job.cancel()
        if self._handle is None:
            return
        ray, serve = import_serve()
        try:
            serve.delete(APP_NAME)
            ray.kill(self._signals)
            if self._started_ray:
                serve.shutdown()
                ray.shutdown()
        finally:
            self._handle = self._signals = None

    # ---- the engine interface

    def submit(self, request: Request) -> Job:
        if self._handle is None:
            raise RuntimeError("the engine is not started; call RayEngine.start() first")
        model = self.models.resolve(request.model).name if hasattr(request, "model") else None
        job = RemoteJob(request, self.event_listeners, on_cancel=self._cancel, on_skip=self._skip)
        with self._lock:
            self._waiting.append(job)
            self._requeue()
            handle = self._handle.options(multiplexed_model_id=model) if model else self._handle
            self._responses[job.id] = handle.run.remote(request, job.key)
        threading.Thread(target=self._relay, args=(job,), name=f"ldm-ui-ray-job-{job.id}", daemon=True).start()
        return job

    def generate(self, request, timeout: float | None = None) -> Finished:
        return self.submit(request).wait(timeout)

    def switch_model(self, name: str, timeout: float | None = None):
        """Load a model on one replica (the least loaded, unless one holds it already); the jobs for that model
        then go to that replica only (ldm_ui/backends/routing.py)."""
        self.submit(LoadModelRequest(model=name)).wait(timeout)
        return self.models.current

    @property
    def queue_length(self) -> int:
        with self._lock:
            return len(self._waiting) + len(self._running)

    def replica_status(self, when_idle: bool = False) -> list[dict]:
        """Each live replica's actor name, loaded model, jobs run and last outcome (Serve's broadcast);
        `when_idle`: each answers once its running request (an interrupted one included) has ended."""
        return self._status_handle.broadcast("status", when_idle).results()

    # ---- relaying one job's stream

    def _ahead(self, waiting_ahead: int) -> int:
        """Queue position: jobs that must start or end before this one gets a replica."""
        return max(0, waiting_ahead + len(self._running) - (self.config.replicas - 1))

    def _relay(self, job: Job) -> None:
        """Read the replica's stream for one job: save its images here, forward its events, report a lost worker."""
        from ray.exceptions import RayActorError, TaskCancelledError
        from ray.serve.exceptions import ReplicaUnavailableError

        # writes the job's images and files here, once, in the Settings' format and filename pattern
        front = FrontOutputs(self.config.outputs_dir, self.config.save_options)
        saved: dict[str, list[Output]] = {}  # planned place -> the Outputs saved here, in order
        last_progress: Progress | None = None
        outcome: Any = None
        try:
            for item in self._responses[job.id]:
                if type(item).__name__ == "ReplicaInfo":
                    job.worker = item.actor_name
                elif type(item).__name__ == "ModelSummary":
                    if isinstance(job.request, LoadModelRequest):
                        self.models.set_current(item)
                elif isinstance(item, Queued):
                    pass  # the replica's own engine queue is always empty: the front's position is what counts
                elif isinstance(item, Started):
                    self._start(job)
                    job.emit(item)
                elif isinstance(item, Output):
                    output = front.image(item)
                    saved.setdefault(item.path, []).append(output)
                    job.emit(output)
                elif isinstance(item, Finished):
                    outcome = front.finished(item, [saved[o.path].pop(0) if saved.get(o.path) else front.image(o)
                                                    for o in item.outputs])
                elif isinstance(item, TERMINAL_EVENTS):
                    outcome = item
                else:
                    if isinstance(item, Progress) and item.steps:
                        last_progress = item
                    job.emit(item)
            if outcome is None:
                outcome = Failed(WORKER_LOST)
        except TaskCancelledError:  # Serve's RequestCancelledError: our own Interrupt
            where = f" at step {last_progress.step}/{last_progress.steps}" if last_progress else ""
            outcome = Cancelled(f"interrupted{where}" if job in self._running else "removed from the queue")
        except (RayActorError, ReplicaUnavailableError) as error:
            log.warning("job %s lost its replica: %s", job.id, error)
            outcome = Failed(WORKER_LOST)
        except Exception as error:  # noqa: BLE001 - the front must survive any job
            log.exception("job %s failed on the front", job.id)
            outcome = Failed(f"{type(error).__name__}: {error}")
        finally:
            self._forget(job)
        job.emit(outcome)

    def _start(self, job: Job) -> None:
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
            self._running.add(job)
            self._positions.pop(job.id, None)
            self._requeue()

    def _forget(self, job: Job) -> None:
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
            self._running.discard(job)
            self._responses.pop(job.id, None)
            self._positions.pop(job.id, None)
            self._requeue()
        signals = self._signals
        if signals is not None:
            try:
                signals.end.remote(job.key)  # the replica stops waiting for skips of this job
            except Exception as error:  # noqa: BLE001 - Ray is shutting down: the job's outcome must still go out
                log.warning("could not end job %s's skips: %s", job.id, error)

    def _requeue(self) -> None:
        """Tell the waiting jobs whose position changed where they are now (called with the lock held)."""
        for index, waiting in enumerate(self._waiting):
            position = self._ahead(index)
            if self._positions.get(waiting.id) != position:
                self._positions[waiting.id] = position
                waiting.emit(Queued(position=position))

    def _skip(self, job: RemoteJob) -> None:
        """Skip: the replica running the job (or the one that will) hears of it through JobSignals."""
        signals = self._signals
        if signals is not None:
            signals.skip.remote(job.key)

    def _cancel(self, job: Job) -> None:
        """Interrupt: Serve cancels the request, whether it waits in the router or runs on a replica."""
        with self._lock:
            response = self._responses.get(job.id)
        if response is not None:
            response.cancel()
