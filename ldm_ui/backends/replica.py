"""One engine replica: a Ray Serve deployment that owns an in-process Engine (and one GPU, or one CPU).

`run` streams the job's events back through Ray Serve's streaming responses. The model a request names travels
as Ray Serve's multiplexed model id, on which the front's request router (ldm_ui/backends/routing.py) sends the job
only to replicas that hold that model, or to the least loaded one when none does; `run` loads it if needed. When the caller cancels the response (Interrupt), Serve
cancels `run` here, which interrupts the engine job within a step. Skip arrives through the front's JobSignals
actor (ldm_ui/backends/signals.py), which `run` waits on beside the job.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from typing import Any, AsyncIterator

from ray import serve
from ray.exceptions import RayActorError

from ldm_ui.backends.outputs import PlannedRunFiles, PlanSave
from ldm_ui.config import AppConfig
from ldm_ui.engine.engine import Engine, JobFailed
from ldm_ui.extensions import ExtensionManager
from ldm_ui.requests import TERMINAL_EVENTS, Failed, Finished, RequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplicaInfo:
    """First item of every stream: which replica runs the job (its Ray actor name, in the "serve" namespace)."""

    actor_name: str


@dataclass(frozen=True)
class ModelEntrySummary:
    name: str


@dataclass(frozen=True)
class ModelSummary:
    """What the UI shows of a replica's loaded model (a LoadedModel itself holds the pipeline)."""

    entry: ModelEntrySummary
    family: str
    native_size: int
    model_hash: str

    @classmethod
    def of(cls, loaded) -> ModelSummary:
        return cls(ModelEntrySummary(loaded.entry.name), loaded.family, loaded.native_size, loaded.model_hash)


def replica_config(config: AppConfig) -> AppConfig:
    """The replica's settings: the front's, with a single local device and no UI-side options."""
    return replace(config, backend="local", share=False, auth=[], auth_file=None)


class EngineReplica:
    """Wrapped by `serve.deployment` in ray_engine.py with the replica count and resources."""

    def __init__(self, config: AppConfig, startup_model: str, signals):
        self.actor_name = serve.get_replica_context().replica_id.to_full_id_str()
        self.signals = signals  # the front's JobSignals actor
        self.engine = Engine(config, save_image=PlanSave(config.outputs_dir),
                             run_files=PlannedRunFiles(config.outputs_dir))
        self.jobs_run = 0
        self.last_outcome = ""  # "Finished: 1 image(s)", "Cancelled: interrupted at step 3/150", ...
        self._idle = asyncio.Event()  # set while no request runs here (an interrupted one runs until its job ended)
        self._idle.set()
        self.engine.event_listeners.append(self._observe)
        # the front's extensions, loaded here too: their prompt transforms, step hooks and preprocessors act on
        # the jobs this replica runs (their tabs live on the front)
        ExtensionManager(config, self.engine).load_all()
        self.engine.start()
        self.engine.switch_model(startup_model)  # ready (and healthy) once the first model is loaded

    def _observe(self, job, event) -> None:
        if isinstance(event, TERMINAL_EVENTS):
            self.jobs_run += 1
            detail = f"{len(event.outputs)} image(s)" if isinstance(event, Finished) else event.message
            self.last_outcome = f"{type(event).__name__}: {detail}"

    @serve.multiplexed(max_num_models_per_replica=1)  # the engine keeps exactly one model
    async def load_model(self, name: str) -> str:
        await asyncio.to_thread(self.engine.switch_model, name)
        return name

    async def _forward_skips(self, key: str, job) -> None:
        """Skip the engine job's current image each time the front counts a skip for it, until the job ended."""
        seen = 0
        try:
            while (count := await self.signals.next_skip.remote(key, seen)) is not None:
                seen = count
                job.skip()
        except RayActorError as error:  # the front is gone (it owns JobSignals): Interrupt still reaches us
            log.warning("skips for job %s no longer arrive: %s", key, error)

    async def run(self, request: Any, key: str) -> AsyncIterator[Any]:
        """One job: its events, streamed back; `key` names it in the front's JobSignals (skips)."""
        self._idle.clear()
        job = skips = None
        try:
            yield ReplicaInfo(self.actor_name)
            model = serve.get_multiplexed_model_id()
            try:
                if model:
                    await self.load_model(model)
                    yield ModelSummary.of(self.engine.models.current)
                job = self.engine.submit(request)
                skips = asyncio.ensure_future(self._forward_skips(key, job))
            except (RequestError, JobFailed) as error:
                yield Failed(str(error))
                return
            events = job.events()
            while True:
                event = await asyncio.to_thread(next, events)
                yield event
                if isinstance(event, TERMINAL_EVENTS):
                    return
        finally:
            if skips is not None:
                skips.cancel()
            if job is not None and not job.done.is_set():
                # the caller interrupted (Serve cancelled us) or went away: stop the job within a step, and stay
                # busy until it stopped, so Serve hands this replica its next request only when the engine is free
                job.cancel()
                await asyncio.to_thread(job.done.wait)
            self._idle.set()

    async def status(self, when_idle: bool = False) -> dict:
        """For `RayEngine.replica_status()` (Serve's broadcast): who this is, what it holds, how its last job ended;
        `when_idle` answers once the request running here (an interrupted one included) has ended."""
        if when_idle:
            await self._idle.wait()
        current = self.engine.models.current
        return {"actor_name": self.actor_name, "model": current.entry.name if current else None,
                "jobs_run": self.jobs_run, "last_outcome": self.last_outcome}

