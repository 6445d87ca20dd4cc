"""img2img (SDEdit), on the pipeline `from_pipe` builds over the loaded weights.

The init image is placed on the canvas (resize mode), VAE-encoded, noised to the timestep `strength` selects and
denoised from there; a strength that leaves no step returns the input through the VAE.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from PIL import Image

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.families import fit_request
from ldm_ui.engine.noise import draws_own_noise
from ldm_ui.engine.tasks.batch import SamplingPlan, run_batches, target_size
from ldm_ui.engine.tasks.refine import with_refiner
from ldm_ui.image_ops import resize_image
from ldm_ui.requests import Finished, Img2ImgRequest

IMG2IMG_PIPELINE = "AutoPipelineForImage2Image"
INPAINT_PIPELINE = "AutoPipelineForInpainting"


def task_pipeline(model, auto_class_name: str):
    pipe = model.pipeline(auto_class_name)
    pipe.set_progress_bar_config(disable=True)  # from_pipe does not carry the loaded pipeline's setting over
    return pipe


def denoising_steps(steps: int, strength: float) -> int:
    """How many of `steps` SDEdit runs: the last `strength` fraction of the schedule (diffusers' rule)."""
    return min(int(steps * strength), steps)


class ReconstructionOnly:
    """Stands in for a pipeline when the strength leaves no step to run: the latents of the init image itself.

    The batch loop then decodes them as usual, so the output is the input through the VAE, saved with its infotext.
    """

    num_timesteps = 0

    def __init__(self, pipe, latents: torch.Tensor):
        self.vae, self.image_processor = pipe.vae, pipe.image_processor
        self.scheduler = pipe.scheduler
        self.latents = latents
        # the batch loop encodes the prompt for every pipeline (its infotext names clip skip and embeddings)
        for name in ("unet", "tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2", "text_encoder_3"):
            setattr(self, name, getattr(pipe, name, None))

    def __call__(self, **kwargs: Any) -> SimpleNamespace:
        batch = len(kwargs["prompt_embeds"] if "prompt_embeds" in kwargs else kwargs["prompt"])
        return SimpleNamespace(images=self.latents.repeat(batch, 1, 1, 1))


def variation_noise(model, request: Img2ImgRequest, latents: torch.Tensor, inpaint_pipeline: bool) -> dict[str, Any]:
    """The SamplingPlan fields for a variation seed: `noises_init_latents` (the init latents' channels) and, for
    the inpaint pipeline at strength 1 (it starts from its pure noise then, noising nothing), `makes_noise`."""
    draws_own_noise(model, request.variation)  # refuses a variation on a model whose pipeline draws its noise
    if request.variation is None or not request.variation.active:
        return {}
    return {"noises_init_latents": int(latents.shape[1]), "makes_noise": inpaint_pipeline and request.strength >= 1}


def steps_summary(request: Img2ImgRequest, steps_run: int) -> str:
    if steps_run == 0:
        return (f"Denoising strength {request.strength:g} leaves no step of {request.steps} to run: "
                "the input went through the VAE only.")
    return f"Denoising strength {request.strength:g}: {steps_run} of {request.steps} steps run."


# ---- img2img


def run(ctx: TaskContext) -> Finished:
    ctx.request, notes = fit_request(ctx.request, ctx.model.family_row)  # e.g. Flux ignores a negative prompt
    request, model = ctx.request, ctx.model
    width, height = target_size(request, model)
    canvas = resize_image(request.init_image.convert("RGB"), width, height, request.resize_mode)
    latents = model.vae.encode(canvas)  # encoded here, under the one VAE policy, and handed over as latents
    extra = {"Denoising strength": f"{request.strength:g}", "Resize mode": request.resize_mode}
    inpaint_pipeline = model.is_inpainting_model
    if inpaint_pipeline:
        # a 9-channel UNet needs a mask: all of it repainted is plain img2img
        pipe = task_pipeline(model, INPAINT_PIPELINE)
        call_kwargs = {"image": latents, "mask_image": Image.new("L", (width, height), 255),
                       "masked_image_latents": torch.zeros_like(latents), "strength": request.strength}
    else:
        pipe = task_pipeline(model, IMG2IMG_PIPELINE)
        call_kwargs = {"image": latents, "strength": request.strength}
    plan = SamplingPlan(pipe=pipe, call_kwargs=call_kwargs, infotext=extra,
                        **variation_noise(model, request, latents, inpaint_pipeline))
    refiner = None
    if denoising_steps(request.steps, request.strength) == 0:  # no noise is added (nor a refiner run)
        plan = SamplingPlan(pipe=ReconstructionOnly(pipe, latents), call_kwargs=call_kwargs, infotext=extra)
    else:  # the SDXL refiner finishes from the switch; the strength applies to the whole schedule
        plan, refiner = with_refiner(ctx, plan, strength=request.strength,
                                     base_stand_in=lambda: ReconstructionOnly(pipe, latents))
    outputs, stats = run_batches(ctx, plan)
    summary = steps_summary(request, stats.steps_run) if refiner is None else refiner.summary()
    return Finished(outputs=outputs, summary=" ".join([summary, *notes]), result=stats)
