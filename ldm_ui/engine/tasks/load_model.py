"""Load a model through the queue, after the jobs already waiting (the engine loads it before the task runs)."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.requests import Finished
from ldm_ui.results import ModelLoaded


def run(ctx: TaskContext) -> Finished:
    model = ctx.model
    return Finished(outputs=[], summary=f"Loaded {model.entry.name}.",
                    result=ModelLoaded(model=model.entry.name, native_size=model.native_size))
