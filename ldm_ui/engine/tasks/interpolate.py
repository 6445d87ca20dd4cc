"""The interpolation runner: a walk through latent space from endpoint A to endpoint B, one image per frame.

prompts/seeds/both: each frame is a txt2img call whose text embeddings (lerp) and initial noise (slerp) are mixed
from the endpoints'. The noise is drawn exactly as the batch loop draws it (a CPU generator per seed, through
diffusers' randn_tensor) and handed to the pipeline as `latents=`, which the pipeline scales by the scheduler's
init_noise_sigma just as it scales noise it draws itself; so frame 0 and the last frame are pixel for pixel the
txt2img images of the endpoints with the same settings (when both prompts fill as many token chunks: a shorter one
is padded with empty chunks so the two can be mixed). Prompt editing and alternation in either prompt switch at
their steps in every frame, the embeddings of both schedules mixed at the frame's weight.

images: both images are VAE-encoded (posterior mean), their latents mixed, and each frame decoded directly or,
with a re-noise strength, noised and denoised with the prompt by the img2img pipeline (SDEdit).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from diffusers.utils.torch_utils import randn_tensor

from ldm_ui.engine.adapters import prepare_adapters
from ldm_ui.engine.prompt_conditioning import Mixed, call_kwargs_for, job_conditioning
from ldm_ui.engine.animation import animation_sequence, encode_gif, encode_mp4
from ldm_ui.engine.context import ProgressClock, TaskContext
from ldm_ui.engine.latent_math import crop_and_resize, frame_positions, lerp, mix, slerp
from ldm_ui.engine.samplers import make_scheduler
from ldm_ui.engine.tasks.batch import infotext_for, resolve_seed, seeded_generators, target_size
from ldm_ui.engine.tasks.sampling import StepCallback, sample
from ldm_ui.requests import Finished, InterpolateRequest, Output, Progress, RequestError
from ldm_ui.results import InterpolationResult

GIF_NAME, MP4_NAME = "interpolation.gif", "interpolation.mp4"


@dataclass
class Endpoint:
    prompt: str
    seed: int
    noise: torch.Tensor  # unscaled initial noise, as randn_tensor draws it for this seed


def run(ctx: TaskContext) -> Finished:
    request: InterpolateRequest = ctx.request
    model = ctx.model
    model.family_row.require("interpolate", model.entry.name)
    if getattr(model.pipe, "unet", None) is None:  # such a model is refused at load; a stand-in may get here
        raise RequestError(f"interpolation works with U-Net models (SD 1.x, 2.x, SDXL and the demo); {model.entry.name} "
                           f"is a {model.family} model")
    width, height = target_size(request, model)
    positions = frame_positions(request.frames, request.easing)
    make_frame = ImageWalk(ctx, width, height) if request.mode == "images" else TextWalk(ctx, width, height)
    # claimed only now, so a request the walk refuses leaves no empty folder behind
    folder = ctx.new_run_folder("interpolate", request.mode)
    outputs: list[Output] = []
    began = time.perf_counter()
    for index, t in enumerate(positions):
        ctx.check_cancel()
        frame = make_frame(index, t)
        if frame is None:  # skipped by the user
            continue
        image, prompt, seed, extra = frame
        ctx.check_cancel()  # an interrupt during the decode drops this frame
        extra = {"Interpolation": request.mode, "Interpolation frame": f"{index + 1}/{request.frames}",
                 "Interpolation weight": f"{t:.4f}", "Easing": request.easing, **extra, **make_frame.infotext}
        infotext = infotext_for(request, model, prompt, seed, width, height, extra)
        outputs.append(ctx.save(image, folder, "frame", infotext, seed))
    ctx.check_cancel()
    ctx.status("encoding the GIF and the MP4…")
    sequence = animation_sequence([o.image for o in outputs], request.ping_pong)
    gif = ctx.save_file(encode_gif(sequence, request.fps), folder, GIF_NAME)
    mp4 = ctx.save_file(encode_mp4(sequence, request.fps), folder, MP4_NAME)
    loop = ", ping-pong" if request.ping_pong else ""
    summary = (f"{len(outputs)} frames in {time.perf_counter() - began:.1f} s; GIF and MP4 of {len(sequence)} frames "
               f"at {request.fps:g} fps{loop} in {folder}")
    result = InterpolationResult(folder=folder, gif=gif, mp4=mp4, width=width, height=height,
                                 animation_frames=len(sequence), positions=tuple(positions))
    return Finished(outputs=outputs, summary=summary, result=result)


class TextWalk:
    """prompts, seeds, both: one txt2img call per frame with mixed embeddings and mixed initial noise."""

    def __init__(self, ctx: TaskContext, width: int, height: int):
        self.ctx, self.width, self.height = ctx, width, height
        request = ctx.request
        # LoRA tags of prompt A are activated (and stale ones dropped) exactly as txt2img does it
        self.pipe, self.call_kwargs, self.infotext = prepare_adapters(ctx, ctx.model.pipe, {}, width, height)
        seed_a = resolve_seed(request.seed)
        seed_b = seed_a
        if request.mode in ("seeds", "both"):
            seed_b = resolve_seed(request.seed_b)
            while request.seed_b < 0 and seed_b == seed_a:  # two random seeds that happen to collide
                seed_b = resolve_seed(-1)
        text_b = request.prompt_b if request.mode in ("prompts", "both") else request.prompt
        prompt_a, prompt_b = ctx.transform_prompt(request.prompt, seed_a), ctx.transform_prompt(text_b, seed_b)
        # both endpoints in one conditioning: padded to the same length, so every frame can mix them row by row
        self.conditioning = job_conditioning(ctx, self.pipe, [prompt_a, prompt_b], [request.negative_prompt] * 2,
                                             request.steps)
        self.infotext = {**self.infotext, **self.conditioning.infotext}
        dtype = self.conditioning.pipeline_kwargs()["prompt_embeds"].dtype
        self.a, self.b = self.endpoint(prompt_a, seed_a, dtype), self.endpoint(prompt_b, seed_b, dtype)

    def endpoint(self, prompt: str, seed: int, dtype: torch.dtype) -> Endpoint:
        noise, _ = self.noise_and_generator(seed, dtype)
        return Endpoint(prompt, seed, noise)

    def noise_and_generator(self, seed: int, dtype: torch.dtype) -> tuple[torch.Tensor, list[torch.Generator]]:
        """The seed's initial noise and its generator advanced past it: the state the pipeline's sampler steps
        draw from after drawing the noise itself (ancestral samplers use it)."""
        pipe = self.pipe
        shape = (1, pipe.unet.config.in_channels, self.height // pipe.vae_scale_factor,
                 self.width // pipe.vae_scale_factor)
        generator = seeded_generators([seed])
        return randn_tensor(shape, generator=generator, device=pipe._execution_device, dtype=dtype), generator

    def __call__(self, index: int, t: float):
        ctx, request, pipe, a, b = self.ctx, self.ctx.request, self.pipe, self.a, self.b
        mixed = Mixed(self.conditioning, t, lerp)
        noise = slerp(a.noise, b.noise, t) if a.seed != b.seed else a.noise
        # ancestral samplers add fresh noise every step; it comes from the nearer endpoint's seed
        step_seed = a.seed if t < 0.5 else b.seed
        _, generator = self.noise_and_generator(step_seed, a.noise.dtype)
        pipe.scheduler = make_scheduler(request.sampler, ctx.model.base_scheduler_config, seed=step_seed)
        latents = sample(
            ctx, pipe, StepCallback(ctx, index, request.frames, unit="frame", conditioning=mixed),
            **call_kwargs_for(mixed), num_inference_steps=request.steps, guidance_scale=request.cfg_scale,
            width=self.width, height=self.height, generator=generator, latents=noise, **self.call_kwargs,
        )
        if latents is None:
            return None
        image = ctx.model.vae.decode(latents)[0]
        at_b = t == 1.0  # the last frame is endpoint B: its infotext reproduces it in txt2img
        prompt, seed = (b.prompt, b.seed) if at_b else (a.prompt, a.seed)
        extra = {}
        if request.mode in ("prompts", "both"):
            extra["Prompt A" if at_b else "Prompt B"] = a.prompt if at_b else b.prompt
        if request.mode in ("seeds", "both"):
            extra["Seed A" if at_b else "Seed B"] = a.seed if at_b else b.seed
        return image, prompt, seed, extra


class ImageWalk:
    """images: VAE latents of two pictures mixed frame by frame; decoded directly or re-noised and denoised."""

    def __init__(self, ctx: TaskContext, width: int, height: int):
        self.ctx = ctx
        request, model = ctx.request, ctx.model
        self.seed = resolve_seed(request.seed)
        self.prompt = ctx.transform_prompt(request.prompt, self.seed)
        self.pipe, self.call_kwargs, self.infotext = model.pipe, {}, {}
        self.conditioning = None
        if request.strength > 0:
            self.pipe, self.call_kwargs, self.infotext = prepare_adapters(
                ctx, model.pipeline("AutoPipelineForImage2Image"), {}, width, height)
            self.conditioning = job_conditioning(ctx, self.pipe, [self.prompt], [request.negative_prompt],
                                                 request.steps)
            self.infotext = {**self.infotext, **self.conditioning.infotext}
        if request.strength > 0 and int(request.steps * request.strength) < 1:
            raise RequestError(f"re-noise strength {request.strength:g} with {request.steps} steps leaves no step to "
                               f"denoise; raise the steps to at least {int(1 / request.strength) + 1} or the strength")
        self.clock = ProgressClock()
        self.a = model.vae.encode(crop_and_resize(request.image_a, width, height))
        self.b = model.vae.encode(crop_and_resize(request.image_b, width, height))

    def __call__(self, index: int, t: float):
        ctx, request, model = self.ctx, self.ctx.request, self.ctx.model
        latents = mix(self.a, self.b, t, request.latent_mix)
        extra = {"Latent mix": request.latent_mix}
        pipe = self.pipe
        if request.strength > 0:
            pipe.scheduler = make_scheduler(request.sampler, model.base_scheduler_config, seed=self.seed)
            latents = sample(
                ctx, pipe, StepCallback(ctx, index, request.frames, unit="frame", conditioning=self.conditioning),
                **call_kwargs_for(self.conditioning), image=latents,
                strength=request.strength, num_inference_steps=request.steps, guidance_scale=request.cfg_scale,
                generator=seeded_generators([self.seed]), **self.call_kwargs,
            )
            if latents is None:
                return None
            extra["Denoising strength"] = f"{request.strength:g}"
        else:
            extra["Re-noise"] = "off (latents decoded directly)"
        image = model.vae.decode(latents)[0]
        if request.strength == 0:  # no sampler steps, so no step callback: report each decoded frame
            rate, eta = self.clock.rate_and_eta(index + 1, request.frames - index - 1)
            ctx.emit(Progress(step=1, steps=1, batch_index=index, batch_count=request.frames, it_per_s=rate,
                              eta_s=eta, unit="frame"))
        return image, self.prompt, self.seed, extra
