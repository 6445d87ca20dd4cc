"""The engine interface the UI, the HTTP API and extensions talk to; both backends implement it.

`ldm_ui.engine.engine.Engine` runs jobs on a worker thread in this process; `ldm_ui.backends.ray_engine.RayEngine`
runs them on engine replicas behind Ray Serve. Callers never need to know which one they hold.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Iterator, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.context import EngineHooks
    from ldm_ui.requests import Finished, Request


class ModelInfo(Protocol):
    """The loaded model as the UI describes it (a LoadedModel locally, a ModelSummary from a replica)."""

    @property
    def entry(self) -> Any: ...  # .name is what the user picked

    @property
    def family(self) -> str: ...

    @property
    def native_size(self) -> int: ...

    @property
    def model_hash(self) -> str: ...


class ModelCatalog(Protocol):
    """The models a user can pick, and the one last loaded."""

    @property
    def current(self) -> ModelInfo | None: ...

    def model_names(self) -> list[str]: ...

    def resolve(self, name: str | None) -> Any: ...  # a ModelEntry; RequestError names an unknown model


class JobStream(Protocol):
    """One submitted request: its events in order (the last one terminal), and a cancel switch."""

    id: int
    request: Any
    done: threading.Event

    def events(self, timeout: float | None = None) -> Iterator[Any]: ...

    def cancel(self) -> None: ...

    def wait(self, timeout: float | None = None) -> Finished: ...


@runtime_checkable
class EngineBackend(Protocol):
    config: AppConfig
    models: ModelCatalog
    hooks: EngineHooks
    event_listeners: list  # (job, event) -> None, called for every event of every job
    embeddings: object  # the textual-inversion library the prompt pickers list (ldm_ui/prompts/embeddings.py)
    concurrency: int  # jobs it runs at once: the UI lets that many generate events run together

    # the extension points (views of `hooks`) that ldm_ui/extensions.py fills
    @property
    def step_hooks(self) -> list: ...

    @property
    def prompt_transforms(self) -> list: ...

    @property
    def controlnet_preprocessors(self) -> dict: ...

    def start(self) -> EngineBackend: ...

    def shutdown(self, timeout: float = 30.0) -> None: ...

    def submit(self, request: Request) -> JobStream: ...

    def generate(self, request: Any, timeout: float | None = None) -> Finished: ...

    def switch_model(self, name: str, timeout: float | None = None) -> ModelInfo: ...

    @property
    def queue_length(self) -> int: ...
