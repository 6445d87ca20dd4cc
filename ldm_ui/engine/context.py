"""What a task sees of the engine: its request, the loaded model, and a few typed services.

Tasks import this module and never the engine, so imports point one way: engine -> registry -> tasks -> context.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.engine.run_files import LocalRunFiles
from ldm_ui.image_saving import save_image
from ldm_ui.prompts.embeddings import Embedding, EmbeddingLibrary
from ldm_ui.requests import Output, Preview, Progress

if TYPE_CHECKING:
    import torch

    from ldm_ui.engine.models import LoadedModel
    from ldm_ui.engine.upscalers import UpscalerLibrary


class JobCancelled(Exception):
    """Raised inside the worker to unwind a job the user interrupted."""


@dataclass
class StepInfo:
    """What a step hook sees after each denoising step. Setting `stop = True` interrupts the job."""

    step: int  # 0-based index of the step just done
    steps: int
    latents: torch.Tensor
    x0: torch.Tensor | None
    request: Any
    stop: bool = False


StepHook = Callable[[StepInfo], None]
PromptTransform = Callable[[str, int], str]  # (prompt, seed) -> prompt
# (image, folder, stem, infotext) -> where it went: saves a finished image; a remote worker plugs in one that
# only names the place, and its front process writes the file (ldm_ui/backends/outputs.py)
SaveImage = Callable[[Image.Image, Path, str, str], Any]


class RunFiles(Protocol):
    """Where a task's other files go: a fresh numbered folder per run, and whole files (an animation) in it.
    `LocalRunFiles` writes them here; a remote worker plugs in one that leaves both to its front process."""

    def new_folder(self, parent: Path, label: str) -> Path: ...

    def write(self, data: bytes, folder: Path, name: str) -> Any: ...  # where it went (a Path, locally)


@dataclass
class EngineHooks:
    """The extension points extensions fill: step hooks, prompt transforms, extra ControlNet preprocessors."""

    step_hooks: list[StepHook] = field(default_factory=list)
    prompt_transforms: list[PromptTransform] = field(default_factory=list)
    # name -> (PIL image) -> PIL image
    controlnet_preprocessors: dict[str, Callable[[Image.Image], Image.Image]] = field(default_factory=dict)


class HasHooks:
    """For engines (local and Ray): the extension points read through the engine, as extensions register them
    (`engine.step_hooks.append(...)`); the engine sets `self.hooks` to its EngineHooks."""

    hooks: EngineHooks

    @property
    def step_hooks(self) -> list[StepHook]:
        return self.hooks.step_hooks

    @property
    def prompt_transforms(self) -> list[PromptTransform]:
        return self.hooks.prompt_transforms

    @property
    def controlnet_preprocessors(self) -> dict[str, Callable[[Image.Image], Image.Image]]:
        return self.hooks.controlnet_preprocessors


class JobHandle(Protocol):
    """The part of a Job a task may touch."""

    @property
    def cancel_requested(self) -> bool: ...

    def take_skip(self) -> bool: ...

    def skip_requested(self) -> bool: ...

    def emit(self, event: Any) -> None: ...


class ProgressClock:
    """Rate and ETA over `total` units of work (steps, or frames when a frame has no steps)."""

    def __init__(self):
        self.started = time.perf_counter()

    def rate_and_eta(self, done: int, remaining: int) -> tuple[float, float]:
        elapsed = time.perf_counter() - self.started
        rate = done / elapsed if elapsed > 0 and done > 0 else 0.0
        return rate, (remaining / rate if rate else 0.0)


class TaskContext:
    """A running job as its task sees it."""

    def __init__(self, job: JobHandle, request: Any, model: LoadedModel | None, config: AppConfig,
                 hooks: EngineHooks, load_model: Callable[[str | None], LoadedModel] | None = None,
                 embeddings: EmbeddingLibrary | None = None, save_image: SaveImage | None = None,
                 upscalers: UpscalerLibrary | None = None, refiner: LoadedModel | None = None,
                 run_files: RunFiles | None = None):
        self.job, self.request, self.config, self.hooks = job, request, config, hooks
        self.refiner = refiner  # the SDXL refiner the request asked for, loaded beside the model (or None)
        self._save_image = save_image  # None: written here, in the config's format and filename pattern
        self._run_files = run_files or LocalRunFiles()
        self._upscalers = upscalers
        self._model = model
        self._embeddings = embeddings
        self._load_model = load_model
        self.last_step = 0  # steps done in the current pipeline call, for "interrupted at step N"
        self.last_steps = 0
        # the LoRAs active on the model for this job ((name, weight) tags, their file hashes): set by lora.py,
        # part of what the text encoders' output depends on
        self.lora_state: tuple = ()

    def embeddings(self) -> dict[str, Embedding]:
        """The textual inversions a prompt may name (re-read when a file changed)."""
        return self._embeddings.scan() if self._embeddings is not None else {}

    @property
    def model(self) -> LoadedModel:
        if self._model is None:
            raise RuntimeError(f"{type(self.request).__name__} runs without a diffusion model")
        return self._model

    @property
    def upscalers(self) -> UpscalerLibrary:
        """The engine's upscalers (one per engine, so a learned model stays loaded between jobs)."""
        if self._upscalers is None:
            from ldm_ui.engine.upscalers import UpscalerLibrary  # a context built outside an engine (tests)

            self._upscalers = UpscalerLibrary(self.config)
        return self._upscalers

    # ---- cancel and skip

    @property
    def cancelled(self) -> bool:
        return self.job.cancel_requested

    def check_cancel(self) -> None:
        if self.job.cancel_requested:
            where = f" at step {self.last_step}/{self.last_steps}" if self.last_steps else ""
            raise JobCancelled(f"interrupted{where}")

    # ---- events

    def status(self, message: str, step: int = 0, steps: int = 0) -> None:
        """A status line with no sampling progress behind it (loading, encoding, writing a video)."""
        self.job.emit(Progress(step=step, steps=steps, batch_index=0, batch_count=1, it_per_s=0.0, eta_s=0.0,
                               message=message))

    def preview(self, image: Image.Image, step: int) -> None:
        self.job.emit(Preview(image=image, step=step))

    def emit(self, event: Any) -> None:
        self.job.emit(event)

    # ---- outputs

    def output_folder(self, task: str) -> Path:
        return self.config.outputs_dir / task / dt.date.today().isoformat()

    def save(self, image: Image.Image, folder: Path, stem: str, infotext: str, seed: int) -> Output:
        """Write the image with its infotext (atomically, in the format, filename pattern and with the .txt the
        settings choose; not when the request says save_images=False, as API callers may; on a Ray replica, by the
        front) and tell the caller the image exists."""
        path = None
        if getattr(self.request, "save_images", True):
            path = (self._save_image(image, folder, stem, infotext) if self._save_image is not None
                    else save_image(image, folder, stem, infotext, self.config.save_options))
        output = Output(image=image, seed=seed, infotext=infotext, path=str(path) if path else None)
        self.job.emit(output)
        return output

    def new_run_folder(self, task: str, label: str) -> Path:
        """A fresh numbered folder for this run's files (00000-<label>, ...) in the task's folder of the day."""
        return self._run_files.new_folder(self.output_folder(task), label)

    def save_file(self, data: bytes, folder: Path, name: str) -> Any:
        """Write a whole file (an animation) into a run folder, atomically; the Path it has (on a Ray replica, the
        bytes with their place, which the front process writes)."""
        return self._run_files.write(data, folder, name)

    # ---- prompts

    def transform_prompt(self, prompt: str, seed: int) -> str:
        for transform in self.hooks.prompt_transforms:
            prompt = transform(prompt, seed)
        return prompt

    # ---- models (only the model-loading task needs more than `model`)

    def load_model(self, name: str | None) -> LoadedModel:
        if self._load_model is None:
            raise RuntimeError("this context cannot load models")
        self._model = self._load_model(name)
        return self._model
