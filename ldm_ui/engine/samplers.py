"""Sampler names users know (AUTOMATIC1111's) <-> diffusers schedulers, with x0 capture for previews.

The name table has no torch import so requests can validate sampler names cheaply.
"""

from __future__ import annotations

import copy
import functools
import inspect
from typing import Any

# name -> (diffusers scheduler class name, config overrides)
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler",
                        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler",
                            {"algorithm_type": "sde-dpmsolver++", "solver_order": 2, "use_karras_sigmas": True}),
    "DPM++ SDE Karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),  # needs torchsde
    "DDIM": ("DDIMScheduler", {"set_alpha_to_one": False}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}
SAMPLER_NAMES: tuple[str, ...] = tuple(SAMPLERS)
# Flow-matching models (SD3, Flux) learn a velocity along a straight noise->image path: only schedulers that
# integrate that path fit them. The same user-facing names, so presets and infotexts keep working.
FLOW_MATCH_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("FlowMatchEulerDiscreteScheduler", {}),
    "Euler a": ("FlowMatchEulerDiscreteScheduler", {"stochastic_sampling": True}),  # re-noised every step
    "Heun": ("FlowMatchHeunDiscreteScheduler", {}),
}

# config keys that belong to one scheduler family and confuse another when carried over
_FAMILY_KEYS = ("algorithm_type", "solver_order", "use_karras_sigmas", "set_alpha_to_one", "solver_type",
                "lower_order_final", "predict_x0", "original_inference_steps", "noise_sampler_seed",
                "stochastic_sampling")

_preview_classes: dict[type, type] = {}
# (sampler name, id of the model's scheduler config) -> (that config, an unused scheduler to copy)
_templates: dict[tuple[str, int], tuple[Any, Any]] = {}
_MAX_TEMPLATES = 64


class SamplerMismatch(ValueError):
    """A sampler name that exists but does not fit the loaded model (this module sits below ldm_ui.requests)."""


def is_flow_matching(base_config: Any) -> bool:
    return str(dict(base_config).get("_class_name", "")).startswith("FlowMatch")


def samplers_for(base_config: Any) -> tuple[str, ...]:
    """The sampler names that fit a model, from its own scheduler's config."""
    if not is_flow_matching(base_config):
        return SAMPLER_NAMES
    return tuple(name for name, (class_name, _) in FLOW_MATCH_SAMPLERS.items()
                 if _takes_shifted_sigmas(class_name) or not dict(base_config).get("use_dynamic_shifting"))


@functools.cache
def _takes_shifted_sigmas(class_name: str) -> bool:
    """Whether a flow-matching scheduler takes the sigmas and `mu` a resolution-shifted model's pipeline hands it
    (Flux shifts its schedule by the image's token count; FlowMatchHeun cannot)."""
    import diffusers

    parameters = inspect.signature(getattr(diffusers, class_name).set_timesteps).parameters
    return "sigmas" in parameters and "mu" in parameters


def make_scheduler(name: str, base_config: Any, seed: int | None = None):
    """A fresh scheduler for `name`, keeping the model's training betas (or flow shift) and prediction type.

    `seed`: the image's seed, for schedulers that draw their noise from a seed of their own instead of the
    pipeline's generator (DPM++ SDE's Brownian tree), so the same seed gives the same image.
    """
    import diffusers

    table = FLOW_MATCH_SAMPLERS if is_flow_matching(base_config) else SAMPLERS
    fitting = samplers_for(base_config)
    if name not in fitting:
        raise SamplerMismatch(f"sampler {name!r} does not fit this model's flow-matching training; choose one of: "
                           f"{', '.join(fitting)}")
    class_name, overrides = table[name]
    cls = _previewing_class(getattr(diffusers, class_name))
    seeded = "noise_sampler_seed" in inspect.signature(cls.__init__).parameters
    cached = _templates.get((name, id(base_config)))
    if cached is None or cached[0] is not base_config:
        config = {k: v for k, v in dict(base_config).items() if k not in _FAMILY_KEYS}
        if seeded:
            overrides = {**overrides, "noise_sampler_seed": seed}  # set per copy below
        # A1111 samplers leave the timestep spacing to 'trailing'/'leading' of the base; keep the model's choice.
        if len(_templates) >= _MAX_TEMPLATES:
            _templates.clear()
        # the config is kept beside it so that its id stays unique while the entry lives
        cached = _templates[(name, id(base_config))] = (base_config, cls.from_config(config, **overrides))
    # a copy of an unused scheduler made from the same config is what from_config would build, without reading
    # the config and the class signature again for every batch (~0.8 ms: a few % of a demo image; DPM++ SDE's
    # constructor computes a 1000-step schedule, ~50 ms)
    scheduler = copy.deepcopy(cached[1])
    if seeded:
        scheduler.noise_sampler_seed = seed  # what its Brownian tree is seeded from, read at the first step
        scheduler.register_to_config(noise_sampler_seed=seed)
    return scheduler


def _previewing_class(base: type) -> type:
    """A subclass of the scheduler that remembers the predicted clean latent (x0) of its last step.

    Pipelines call `scheduler.step(...)`; the subclass keeps that public contract and only records what the
    step computed, so the preview can show x0 instead of the noisy latent.
    """
    if base not in _preview_classes:
        # wraps() keeps the base signature visible: pipelines inspect it to decide whether to pass `generator`
        @functools.wraps(base.step)
        def step(self, model_output, timestep, sample, *args, **kwargs):
            return_dict = kwargs.pop("return_dict", True)
            flow_x0 = _flow_match_x0(self, model_output, timestep, sample)
            out = base.step(self, model_output, timestep, sample, *args, return_dict=True, **kwargs)
            x0 = flow_x0 if flow_x0 is not None else getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = getattr(out, "denoised", None)
            if x0 is None and getattr(self, "model_outputs", None) and _outputs_are_x0(self):
                x0 = self.model_outputs[-1]  # multistep solvers keep their data prediction here
            self.last_x0 = x0
            return out if return_dict else tuple(out.values())

        members = {"step": step, "last_x0": None, "initial_noise": None}
        if hasattr(base, "add_noise"):
            members["add_noise"] = _add_noise_with(base)
        _preview_classes[base] = type(f"Previewing{base.__name__}", (base,), members)
    return _preview_classes[base]


def _add_noise_with(base: type):
    """`add_noise` that, when the batch loop has set `initial_noise` (variation seeds in img2img and inpaint),
    noises the init latents with that instead of the noise the pipeline drew.

    img2img pipelines take no noise of their own (`latents=` is not the noise there); they draw it and hand it
    to this public scheduler method, which the inpaint pipeline also calls after every step to re-noise the
    original outside the mask: all of those get the same initial noise, as they would get the drawn one.
    """

    @functools.wraps(base.add_noise)
    def add_noise(self, original_samples, noise, timesteps):
        chosen = self.initial_noise
        if chosen is not None:
            if tuple(chosen.shape) != tuple(noise.shape):
                raise ValueError(f"the variation noise is {tuple(chosen.shape)} but the pipeline noises "
                                 f"{tuple(noise.shape)} latents")
            noise = chosen.to(noise.device, noise.dtype)
        return base.add_noise(self, original_samples, noise, timesteps)

    return add_noise


def _flow_match_x0(scheduler, model_output, timestep, sample):
    """x0 of a flow-matching step: the path is x_t = (1 - sigma) x0 + sigma noise and the model predicts
    noise - x0, so x0 = x_t - sigma * prediction (flow-matching schedulers report no x0 themselves)."""
    if not type(scheduler).__name__.startswith("PreviewingFlowMatch"):
        return None
    index = scheduler.step_index if scheduler.step_index is not None else scheduler.index_for_timestep(timestep)
    sigma = scheduler.sigmas[index].to(sample.device, sample.dtype)
    return sample - sigma * model_output


def _outputs_are_x0(scheduler) -> bool:
    config = scheduler.config
    return "++" in str(config.get("algorithm_type", "")) or bool(config.get("predict_x0", False))


def sampler_is_deterministic(name: str) -> bool:
    return name not in ("Euler a", "DPM++ SDE Karras", "DPM++ 2M SDE Karras", "LCM")
