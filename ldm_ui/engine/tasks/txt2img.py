"""txt2img: the loaded pipeline, as it is, through the shared batch loop."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches
from ldm_ui.requests import Finished


def run(ctx: TaskContext) -> Finished:
    outputs, stats = run_batches(ctx, SamplingPlan(pipe=ctx.model.pipe))
    return Finished(outputs=outputs, result=stats)
