"""LoRA and ControlNet for one job: the one call every runner makes before sampling.

    pipe, call_kwargs, infotext = prepare_adapters(ctx, pipe, call_kwargs, width, height)

activates the prompt's `<lora:name:weight>` tags on the loaded model (see lora.py), and when the request has
ControlNet units swaps `pipe` for its ControlNet variant over the same weights, with the preprocessed control
maps in `call_kwargs` (see controlnet.py). `encoder_prompt` strips the tags from what the text encoder reads.
"""

from __future__ import annotations

from typing import Any

from ldm_ui.engine.controlnet import (
    active_units, cached_controlnets, control_maps, controlnet_call_kwargs, controlnet_pipeline, fit_call_kwargs,
    unit_infotext,
)
from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.lora import activate_loras, strip_lora_tags
from ldm_ui.requests import RequestError


def prepare_adapters(ctx: TaskContext, pipe, call_kwargs: dict[str, Any], width: int, height: int):
    request = ctx.request
    infotext: dict[str, Any] = dict(activate_loras(ctx, request.prompt))
    units = active_units(getattr(request, "controlnets", ()))
    if not units or not hasattr(pipe, "components"):  # a stand-in that runs no step has nothing to control
        return pipe, call_kwargs, infotext
    ctx.model.family_row.require("controlnet", ctx.model.entry.name)
    if getattr(pipe, "unet", None) is None:  # such a model is refused at load; a stand-in may get here
        raise RequestError(f"ControlNet units work with U-Net models (SD 1.x, 2.x, SDXL); {ctx.model.entry.name} is a "
                           f"{ctx.model.family} model: switch the units off or pick another model")
    models = cached_controlnets(ctx.model, ctx.config, units, ctx.status)
    controlled = controlnet_pipeline(pipe, models)
    maps = control_maps(ctx.config, units, width, height, ctx.hooks.controlnet_preprocessors)
    infotext.update(unit_infotext(units))
    call_kwargs = {**fit_call_kwargs(controlled, call_kwargs), **controlnet_call_kwargs(controlled, units, maps)}
    return controlled, call_kwargs, infotext


def encoder_prompt(prompt: str) -> str:
    """What the text encoder reads: the prompt without its LoRA tags."""
    return strip_lora_tags(prompt)
