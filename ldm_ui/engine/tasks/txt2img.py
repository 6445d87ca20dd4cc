"""txt2img: the loaded pipeline, as it is, through the shared batch loop; hires fix adds a second pass."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.families import fit_request
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches, target_size
from ldm_ui.engine.tasks.hires import HiresPass, hires_infotext
from ldm_ui.engine.noise import draws_own_noise
from ldm_ui.requests import Finished


def run(ctx: TaskContext) -> Finished:
    model = ctx.model
    ctx.request, notes = fit_request(ctx.request, model.family_row)  # e.g. Flux ignores a negative prompt
    request = ctx.request
    # the batch loop draws the initial noise itself (variation seeds) for U-Net models; DiT pipelines draw their own
    makes_noise = draws_own_noise(model, request.variation)
    family_kwargs = dict(model.family_row.txt2img_kwargs)  # e.g. PixArt: no resolution binning
    if request.hires is None:
        plan = SamplingPlan(pipe=model.pipe, call_kwargs=family_kwargs, makes_noise=makes_noise)
        outputs, stats = run_batches(ctx, plan)
        return Finished(outputs=outputs, summary=" ".join(notes), result=stats)
    second_pass = HiresPass(ctx, *target_size(request, model))
    plan = SamplingPlan(pipe=model.pipe, call_kwargs=family_kwargs, infotext=hires_infotext(request),
                        second_pass=second_pass, makes_noise=makes_noise)
    outputs, stats = run_batches(ctx, plan)
    return Finished(outputs=outputs, summary=" ".join([second_pass.summary(), *notes]), result=stats)
