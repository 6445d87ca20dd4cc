"""Which task runs which request: the engine imports this table; tasks never import it (or the engine) back.

Adding a task: a request dataclass in ldm_ui/requests.py, a module under engine/tasks/ with `run(ctx)`, and one
row here. `requires_model=False` keeps a task that needs no diffusion model (a preprocessor, an upscaler) from
loading one.

A row names its module; the worker imports it when the task first runs. Tasks import torch and diffusers, and
the app builds and serves its page before paying for those imports (app.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ldm_ui.requests import (
    ControlMapRequest, Finished, Img2ImgRequest, InpaintRequest, InspectLatentsRequest, InterpolateRequest,
    LoadModelRequest, OutpaintRequest, RequestError, SetVaeRequest, Txt2ImgRequest, UpscaleRequest,
)


if TYPE_CHECKING:
    from ldm_ui.engine.context import TaskContext


@dataclass(frozen=True)
class Task:
    module: str  # under ldm_ui.engine.tasks, with `run(ctx) -> Finished`
    requires_model: bool = True

    @property
    def run(self) -> Callable[[TaskContext], Finished]:
        return importlib.import_module(f"ldm_ui.engine.tasks.{self.module}").run


TASKS: dict[type, Task] = {
    Txt2ImgRequest: Task("txt2img"),
    Img2ImgRequest: Task("img2img"),
    InpaintRequest: Task("inpaint"),
    InterpolateRequest: Task("interpolate"),
    InspectLatentsRequest: Task("inspect_latents"),
    LoadModelRequest: Task("load_model"),
    SetVaeRequest: Task("set_vae"),
    ControlMapRequest: Task("control_map", requires_model=False),
    UpscaleRequest: Task("upscale", requires_model=False),
    OutpaintRequest: Task("outpaint"),
}


def task_for(request: object) -> Task:
    """The task for a request; the most specific class wins (InpaintRequest is also an Img2ImgRequest)."""
    for request_type in type(request).__mro__:
        if request_type in TASKS:
            return TASKS[request_type]
    raise RequestError(f"no task runs {type(request).__name__}; known requests: "
                       f"{', '.join(t.__name__ for t in TASKS)}")
