"""Which task runs which request: the engine imports this table; tasks never import it (or the engine) back.

Adding a task: a request dataclass in ldm_ui/requests.py, a module under engine/tasks/ with `run(ctx)`, and one
row here. `requires_model=False` keeps a task that needs no diffusion model (a preprocessor, an upscaler) from
loading one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.tasks import (
    control_map, img2img, inpaint, inspect_latents, interpolate, load_model, outpaint, set_vae, txt2img, upscale,
)
from ldm_ui.requests import (
    ControlMapRequest, Finished, Img2ImgRequest, InpaintRequest, InspectLatentsRequest, InterpolateRequest,
    LoadModelRequest, OutpaintRequest, RequestError, SetVaeRequest, Txt2ImgRequest, UpscaleRequest,
)


@dataclass(frozen=True)
class Task:
    run: Callable[[TaskContext], Finished]
    requires_model: bool = True


TASKS: dict[type, Task] = {
    Txt2ImgRequest: Task(txt2img.run),
    Img2ImgRequest: Task(img2img.run),
    InpaintRequest: Task(inpaint.run),
    InterpolateRequest: Task(interpolate.run),
    InspectLatentsRequest: Task(inspect_latents.run),
    LoadModelRequest: Task(load_model.run),
    SetVaeRequest: Task(set_vae.run),
    ControlMapRequest: Task(control_map.run, requires_model=False),
    UpscaleRequest: Task(upscale.run, requires_model=False),
    OutpaintRequest: Task(outpaint.run),
}


def task_for(request: object) -> Task:
    """The task for a request; the most specific class wins (InpaintRequest is also an Img2ImgRequest)."""
    for request_type in type(request).__mro__:
        if request_type in TASKS:
            return TASKS[request_type]
    raise RequestError(f"no task runs {type(request).__name__}; known requests: "
                       f"{', '.join(t.__name__ for t in TASKS)}")
