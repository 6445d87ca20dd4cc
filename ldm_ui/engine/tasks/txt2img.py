"""txt2img: the loaded pipeline, as it is, through the shared batch loop; hires fix adds a second pass."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches, target_size
from ldm_ui.engine.tasks.hires import HiresPass, hires_infotext
from ldm_ui.engine.noise import draws_own_noise
from ldm_ui.requests import Finished


def run(ctx: TaskContext) -> Finished:
    request, model = ctx.request, ctx.model
    # the batch loop draws the initial noise itself (variation seeds) for U-Net models; DiT pipelines draw their own
    makes_noise = draws_own_noise(model, request.variation)
    if request.hires is None:
        outputs, stats = run_batches(ctx, SamplingPlan(pipe=model.pipe, makes_noise=makes_noise))
        return Finished(outputs=outputs, result=stats)
    second_pass = HiresPass(ctx, *target_size(request, model))
    plan = SamplingPlan(pipe=model.pipe, infotext=hires_infotext(request), second_pass=second_pass,
                        makes_noise=makes_noise)
    outputs, stats = run_batches(ctx, plan)
    return Finished(outputs=outputs, summary=second_pass.summary(), result=stats)
