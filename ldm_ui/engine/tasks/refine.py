"""The SDXL refiner's stage: the base denoises the schedule up to the switch point, the refiner finishes it.

diffusers' split, as its SDXL documentation describes it: the base pipeline runs with `denoising_end=switch_at`
and hands its latents over (`output_type="latent"`, as every call in the batch loop does); the refiner's
`StableDiffusionXLImg2ImgPipeline` takes them with `denoising_start=switch_at` and adds no noise. Both fractions
are of the whole schedule, so in img2img the strength picks where the job starts and the switch where the refiner
takes over; when the strength starts the job below the switch, the refiner runs all of it (as img2img at that
strength). The batch loop decodes once, with the base's VAE. The stage is the batch loop's `second_pass`, calling
`sample()` with its own StepCallback that continues the base's step count, so progress, previews, step hooks,
Interrupt and Skip work in either stage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.controlnet import active_units
from ldm_ui.engine.prompt_conditioning import call_kwargs_for, job_conditioning
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.tasks.batch import SamplingPlan, seeded_generators
from ldm_ui.engine.tasks.sampling import StepCallback, sample
from ldm_ui.requests import RequestError

REFINER_PIPELINE = "AutoPipelineForImage2Image"  # over an SDXL model: StableDiffusionXLImg2ImgPipeline

SecondPass = Callable[[torch.Tensor, list[int], list[str], int], "torch.Tensor | None"]


def switch_timestep(scheduler, switch_at: float) -> int:
    """The training timestep where the schedule switches (diffusers' `discrete_timestep_cutoff`)."""
    total = scheduler.config.num_train_timesteps
    return int(round(total - switch_at * total))


def base_steps(scheduler, steps: int, switch_at: float, strength: float | None = None) -> int:
    """The steps the base runs before the switch (its pipeline's calls of the step callback): the schedule's
    timesteps at or above the switch, of the img2img part of the schedule when there is a `strength`."""
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps
    if strength is not None:  # the img2img pipeline's own cut (get_timesteps without denoising_start)
        start = max(steps - min(int(steps * strength), steps), 0)
        timesteps = timesteps[start * scheduler.order:]
    return int((timesteps >= switch_timestep(scheduler, switch_at)).sum())


def refiner_steps(scheduler, steps: int, switch_at: float) -> int:
    """The steps the refiner's pipeline runs from `denoising_start=switch_at` (its get_timesteps rule: below the
    switch, one more on a second-order sampler when the count would end between its two evaluations)."""
    scheduler.set_timesteps(steps)
    count = int((scheduler.timesteps < switch_timestep(scheduler, switch_at)).sum())
    return count + 1 if scheduler.order == 2 and count % 2 == 0 else count


def refiner_infotext(refiner, switch_at: float) -> dict[str, str]:
    """AUTOMATIC1111's keys: `Refiner: <name> [<hash>]`, `Refiner switch at: 0.8`."""
    name = f"{refiner.entry.name} [{refiner.model_hash}]" if refiner.model_hash else refiner.entry.name
    return {"Refiner": name, "Refiner switch at": f"{switch_at:g}"}


class RefinerStage:
    """The second pass of a job with a refiner (SamplingPlan.second_pass), called once per batch."""

    def __init__(self, ctx: TaskContext, strength: float | None = None):
        self.ctx, self.request = ctx, ctx.request
        self.refiner = ctx.refiner
        self.switch_at: float = ctx.request.refiner.switch_at
        self.strength = strength
        self.pipe = self.refiner.pipeline(REFINER_PIPELINE)
        self.pipe.set_progress_bar_config(disable=True)  # from_pipe does not carry the loaded pipeline's setting
        request = self.request
        self.base_steps = base_steps(make_scheduler(request.sampler, ctx.model.base_scheduler_config),
                                     request.steps, self.switch_at, strength)
        self.planned_steps = refiner_steps(make_scheduler(request.sampler, self.refiner.base_scheduler_config),
                                           request.steps, self.switch_at)
        self.steps_run = 0  # in the last batch, as the refiner's pipeline reports it

    @property
    def runs_everything(self) -> bool:
        """img2img whose strength starts the job below the switch: nothing is left to the base."""
        return self.strength is not None and self.base_steps == 0

    def __call__(self, latents: torch.Tensor, seeds: list[int], prompts: list[str],
                 batch_index: int) -> torch.Tensor | None:
        ctx, request = self.ctx, self.request
        ctx.check_cancel()
        if self.planned_steps == 0 and not self.runs_everything:
            return latents  # the switch lies past the schedule's last step: the base's latents are the result
        self.pipe.scheduler = make_scheduler(request.sampler, self.refiner.base_scheduler_config, seed=seeds[0])
        # the refiner reads the prompt with its own text encoder (SDXL's second), keeping its own last conditioning
        conditioning = job_conditioning(ctx, self.pipe, prompts, [request.negative_prompt] * len(seeds),
                                        request.steps, model=self.refiner)
        first = 0 if self.runs_everything else self.base_steps
        stage: dict[str, Any] = ({"strength": self.strength} if self.runs_everything
                                 else {"denoising_start": self.switch_at})
        callback = StepCallback(ctx, batch_index, request.batch_count, conditioning=conditioning, steps_before=first)
        result = sample(
            ctx, self.pipe, callback, **call_kwargs_for(conditioning, first), image=latents,
            num_inference_steps=request.steps, guidance_scale=request.cfg_scale,
            generator=seeded_generators(seeds), **stage,
        )
        self.steps_run = getattr(self.pipe, "num_timesteps", 0)
        return result

    def summary(self) -> str:
        if self.runs_everything:
            return (f"Refiner {self.refiner.entry.name}: the strength starts below the switch at "
                    f"{self.switch_at:g}, so it ran all {self.steps_run} steps.")
        return (f"Refiner {self.refiner.entry.name}: {self.steps_run} steps after the base's {self.base_steps} "
                f"(switch at {self.switch_at:g}).")


def chained(first: SecondPass, then: SecondPass | None) -> SecondPass:
    """Two second passes in a row (the refiner finishes the first pass, then the hires fix)."""
    if then is None:
        return first

    def run(latents: torch.Tensor, seeds: list[int], prompts: list[str], batch_index: int):
        latents = first(latents, seeds, prompts, batch_index)
        return None if latents is None else then(latents, seeds, prompts, batch_index)

    return run


def with_refiner(ctx: TaskContext, plan: SamplingPlan, strength: float | None = None,
                 base_stand_in: Callable[[], Any] | None = None) -> tuple[SamplingPlan, RefinerStage | None]:
    """`plan` with the refiner's stage after the base, when the job has a refiner; and the stage (None without).

    img2img passes its `strength` and a `base_stand_in` (a pipeline that returns the init latents as they are) for
    the case where the refiner runs the whole job."""
    if ctx.refiner is None:
        return plan, None
    if strength is not None and active_units(getattr(ctx.request, "controlnets", ())):
        # diffusers' SDXL ControlNet img2img pipeline has no denoising_end: the base would not stop at the switch
        raise RequestError("the refiner and ControlNet units cannot run together in img2img (the ControlNet "
                           "img2img pipeline cannot stop at the switch point); switch the units off, or set Refiner "
                           "to None (in txt2img they work together)")
    stage = RefinerStage(ctx, strength)
    base_kwargs = {"denoising_end": stage.switch_at}
    changes: dict[str, Any] = {}
    if stage.runs_everything and base_stand_in is not None:
        changes = {"pipe": base_stand_in(), "makes_noise": False, "noises_init_latents": None}
        base_kwargs = {}
    return replace(plan, **changes, call_kwargs={**plan.call_kwargs, **base_kwargs},
                   infotext={**plan.infotext, **refiner_infotext(ctx.refiner, stage.switch_at)},
                   second_pass=chained(stage, plan.second_pass), steps_after=stage.planned_steps), stage
