"""Sampler names users know (AUTOMATIC1111's) <-> diffusers schedulers, with x0 capture for previews.

The name table has no torch import so requests can validate sampler names cheaply.
"""

from __future__ import annotations

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

# config keys that belong to one scheduler family and confuse another when carried over
_FAMILY_KEYS = ("algorithm_type", "solver_order", "use_karras_sigmas", "set_alpha_to_one", "solver_type",
                "lower_order_final", "predict_x0", "original_inference_steps", "noise_sampler_seed")

_preview_classes: dict[type, type] = {}


def make_scheduler(name: str, base_config: Any, seed: int | None = None):
    """A fresh scheduler for `name`, keeping the model's training betas and prediction type.

    `seed`: the image's seed, for schedulers that draw their noise from a seed of their own instead of the
    pipeline's generator (DPM++ SDE's Brownian tree), so the same seed gives the same image.
    """
    import diffusers

    class_name, overrides = SAMPLERS[name]
    cls = _previewing_class(getattr(diffusers, class_name))
    config = {k: v for k, v in dict(base_config).items() if k not in _FAMILY_KEYS}
    if "noise_sampler_seed" in inspect.signature(cls.__init__).parameters:
        overrides = {**overrides, "noise_sampler_seed": seed}
    # A1111 samplers leave the timestep spacing to 'trailing'/'leading' of the base; keep the model's choice.
    return cls.from_config(config, **overrides)


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
            out = base.step(self, model_output, timestep, sample, *args, return_dict=True, **kwargs)
            x0 = getattr(out, "pred_original_sample", None)
            if x0 is None:
                x0 = getattr(out, "denoised", None)
            if x0 is None and getattr(self, "model_outputs", None) and _outputs_are_x0(self):
                x0 = self.model_outputs[-1]  # multistep solvers keep their data prediction here
            self.last_x0 = x0
            return out if return_dict else tuple(out.values())

        _preview_classes[base] = type(f"Previewing{base.__name__}", (base,), {"step": step, "last_x0": None})
    return _preview_classes[base]


def _outputs_are_x0(scheduler) -> bool:
    config = scheduler.config
    return "++" in str(config.get("algorithm_type", "")) or bool(config.get("predict_x0", False))


def sampler_is_deterministic(name: str) -> bool:
    return name not in ("Euler a", "DPM++ SDE Karras", "DPM++ 2M SDE Karras", "LCM")
