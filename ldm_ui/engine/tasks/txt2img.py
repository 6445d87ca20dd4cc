"""txt2img: the loaded pipeline, as it is, through the shared batch loop; the SDXL refiner and the hires fix add
a second pass (the refiner's first, when there are both)."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.families import fit_request
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches, target_size
from ldm_ui.engine.tasks.hires import HiresPass, hires_infotext
from ldm_ui.engine.tasks.refine import with_refiner
from ldm_ui.engine.noise import draws_own_noise
from ldm_ui.requests import Finished


def run(ctx: TaskContext) -> Finished:
    model = ctx.model
    ctx.request, notes = fit_request(ctx.request, model.family_row)  # e.g. Flux ignores a negative prompt
    request = ctx.request
    # the batch loop draws the initial noise itself (variation seeds) for U-Net models; DiT pipelines draw their own
    makes_noise = draws_own_noise(model, request.variation)
    family_kwargs = dict(model.family_row.txt2img_kwargs)  # e.g. PixArt: no resolution binning
    plan, hires = SamplingPlan(pipe=model.pipe, call_kwargs=family_kwargs, makes_noise=makes_noise), None
    if request.hires is not None:
        hires = HiresPass(ctx, *target_size(request, model))
        plan = SamplingPlan(pipe=model.pipe, call_kwargs=family_kwargs, infotext=hires_infotext(request),
                            second_pass=hires, makes_noise=makes_noise)
    plan, refiner = with_refiner(ctx, plan)
    outputs, stats = run_batches(ctx, plan)
    summary = " ".join([*(stage.summary() for stage in (refiner, hires) if stage is not None), *notes])
    return Finished(outputs=outputs, summary=summary, result=stats)
