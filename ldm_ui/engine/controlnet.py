"""ControlNet: find models, load them next to the base model, and build the task's ControlNet pipeline.

The ControlNet pipelines are built with `from_pipe(pipe, controlnet=...)` over the loaded base weights, so the
base model is never copied. Several units become a MultiControlNet through the same call (a list of models).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm_ui.config import AppConfig
from ldm_ui.engine.preprocessors import PreprocessorError, preprocess
from ldm_ui.requests import ControlNetUnit, RequestError
from ldm_ui.safe_paths import check_name, is_inside, shown_path

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
SINGLE_FILE_SUFFIXES = (".safetensors",)


class ControlNetError(RequestError):
    """A ControlNet model or unit that cannot be used; the message names it and says what is allowed."""


@dataclass(frozen=True)
class ControlNetEntry:
    name: str
    kind: str  # diffusers | single_file | hub
    location: str


def controlnet_dir(config: AppConfig) -> Path:
    return config.models_dir / "ControlNet"


def list_controlnets(config: AppConfig) -> list[ControlNetEntry]:
    root = controlnet_dir(config)
    entries: list[ControlNetEntry] = []
    if not root.is_dir():
        return entries
    for path in sorted(root.iterdir(), key=lambda p: p.name.lower()):
        if not is_inside(path, root):  # a link out of the ControlNet folder is not offered
            continue
        if path.is_dir() and (path / "config.json").is_file():
            entries.append(ControlNetEntry(path.name, "diffusers", str(path)))
        elif path.is_file() and path.suffix.lower() in SINGLE_FILE_SUFFIXES:
            entries.append(ControlNetEntry(path.name, "single_file", str(path)))
    return entries


def resolve_controlnet(config: AppConfig, name: str) -> ControlNetEntry:
    name = check_name(name.strip() if isinstance(name, str) else name, "ControlNet")
    for entry in list_controlnets(config):
        if entry.name == name or (entry.kind == "single_file" and Path(entry.name).stem == name):
            return entry
    if HUB_ID.match(name) and ".." not in name and not os.path.exists(name):
        return ControlNetEntry(name, "hub", name)
    known = ", ".join(e.name for e in list_controlnets(config)) or "none found"
    raise ControlNetError(f"unknown ControlNet model {name!r}: put a diffusers folder or a .safetensors file in "
                          f"{shown_path(controlnet_dir(config))} ({known}), or type a hub id such as "
                          "'lllyasviel/control_v11p_sd15_canny'")


def load_controlnet(config: AppConfig, entry: ControlNetEntry, base_pipe, dtype, device, offloaded: bool = False):
    from diffusers import ControlNetModel

    safetensors_only = None if config.allow_pickle else True  # .bin (pickle) weights only with --allow-pickle
    if entry.kind == "diffusers":
        from ldm_ui.engine.models import refuse_pickle_folder

        refuse_pickle_folder(entry.name, Path(entry.location), config.allow_pickle, "ControlNet")
    try:
        if entry.kind == "diffusers":
            model = ControlNetModel.from_pretrained(entry.location, torch_dtype=dtype, local_files_only=True,
                                                    use_safetensors=safetensors_only)
        elif entry.kind == "single_file":
            model = ControlNetModel.from_single_file(entry.location, config=str(_config_for(config, base_pipe)),
                                                     torch_dtype=dtype, local_files_only=True)
        else:
            offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
            model = ControlNetModel.from_pretrained(entry.location, torch_dtype=dtype, local_files_only=offline,
                                                    use_safetensors=safetensors_only)
    except Exception as error:  # noqa: BLE001 - every load failure means the same to a user
        raise ControlNetError(f"could not load ControlNet {entry.name!r}: {error}") from error
    base = base_pipe.unet.config
    if model.config.cross_attention_dim != base.cross_attention_dim:
        raise ControlNetError(
            f"ControlNet {entry.name!r} was made for a model with text features of size "
            f"{model.config.cross_attention_dim}; the loaded model uses {base.cross_attention_dim} "
            "(a ControlNet only fits the model family it was trained for: SD 1.x, SD 2.x or SDXL)")
    if offloaded:
        # the base model is offloaded (--medvram/--lowvram): keep this one on the CPU too, streamed to the GPU
        # layer by layer while it runs, instead of resident next to the offloaded U-Net
        from accelerate import cpu_offload

        cpu_offload(model, execution_device=device)
        return model.eval()
    return model.to(device).eval()


def _config_for(config: AppConfig, base_pipe) -> Path:
    """A diffusers config folder for a single-file ControlNet: the base U-Net's encoder layout (offline)."""
    from diffusers import ControlNetModel

    unet_config = dict(base_pipe.unet.config)
    folder = config.cache_dir / "controlnet-configs" / f"cross{unet_config['cross_attention_dim']}"
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {k: v for k, v in ControlNetModel.from_config(
        {k: v for k, v in unet_config.items() if not k.startswith("_")}).config.items()}
    wanted["_class_name"] = "ControlNetModel"
    (folder / "config.json").write_text(json.dumps(wanted, indent=1, default=list))
    return folder


def cached_controlnets(loaded, config: AppConfig, units: list[ControlNetUnit], report) -> list:
    """The units' ControlNet models, loaded once per base model and kept while the following jobs use them."""
    cache: dict = loaded.controlnets
    wanted = []
    for unit in units:
        entry = resolve_controlnet(config, unit.model)
        key = entry.location
        if key not in cache:
            report(f"loading ControlNet {entry.name}")
            cache[key] = load_controlnet(config, entry, loaded.pipe, loaded.pipe.unet.dtype, loaded.device,
                                         offloaded=loaded.offloaded)
        wanted.append(key)
    for key in [k for k in cache if k not in wanted]:
        del cache[key]  # models this job does not use are released
    return [cache[key] for key in wanted]


def active_units(units) -> list[ControlNetUnit]:
    """Units that can change the image: enabled, weight above 0 and a guidance window of some length."""
    return [u for u in units if u.enabled and u.weight > 0 and u.guidance_end > u.guidance_start]


def control_maps(config: AppConfig, units: list[ControlNetUnit], width: int, height: int,
                 extra_preprocessors: dict | None = None) -> list:
    maps = []
    for index, unit in enumerate(units):
        try:
            maps.append(preprocess(unit.image, unit.preprocessor, width, height, config.models_dir,
                                   unit.canny_low, unit.canny_high, extra_preprocessors))
        except PreprocessorError as error:
            raise ControlNetError(f"ControlNet unit {index + 1}: {error}") from None
    return maps


def controlnet_pipeline(pipe, models: list):
    """The ControlNet variant of `pipe`'s task (txt2img, img2img or inpaint), sharing all of its weights."""
    import diffusers

    name = type(pipe).__name__
    auto = ("AutoPipelineForInpainting" if "Inpaint" in name else
            "AutoPipelineForImage2Image" if "Img2Img" in name else "AutoPipelineForText2Image")
    try:
        controlled = getattr(diffusers, auto).from_pipe(pipe, controlnet=models[0] if len(models) == 1 else models)
    except ValueError as error:
        raise ControlNetError(f"ControlNet is not available for {name}: {error}") from error
    controlled.set_progress_bar_config(disable=True)
    return controlled


def controlnet_call_kwargs(pipe, units: list[ControlNetUnit], maps: list) -> dict[str, Any]:
    import inspect

    # txt2img pipelines take the control map as `image`; img2img and inpaint use `image` for the init image
    image_key = "control_image" if "control_image" in inspect.signature(pipe.__call__).parameters else "image"
    single = len(units) == 1
    pick = (lambda values: values[0]) if single else list
    return {
        image_key: pick(maps),
        "controlnet_conditioning_scale": pick([float(u.weight) for u in units]),
        "control_guidance_start": pick([float(u.guidance_start) for u in units]),
        "control_guidance_end": pick([float(u.guidance_end) for u in units]),
    }


def fit_call_kwargs(controlled, call_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's call arguments in the form the ControlNet pipeline takes.

    diffusers' ControlNet inpaint pipeline has no `masked_image_latents` and masks `image` in pixel space, so
    latents handed in as `image` are decoded back to pixels; it then derives the masked image itself.
    """
    import inspect

    import torch

    accepted = inspect.signature(controlled.__call__).parameters
    fitted = {k: v for k, v in call_kwargs.items() if k in accepted}
    image = fitted.get("image")
    if "masked_image_latents" in call_kwargs and "masked_image_latents" not in accepted and torch.is_tensor(image) \
            and image.shape[1] == controlled.vae.config.latent_channels:
        vae = controlled.vae
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        with torch.no_grad():
            fitted["image"] = vae.decode((image / vae.config.scaling_factor + shift).to(vae.dtype)).sample.clamp(-1, 1)
    return fitted


def unit_infotext(units: list[ControlNetUnit]) -> dict[str, str]:
    """A1111-style `ControlNet N: "Module: …, Model: …, Weight: …, Guidance Start: …, Guidance End: …"`."""
    entries = {}
    for index, unit in enumerate(units):
        parts = [f"Module: {unit.preprocessor}", f"Model: {unit.model}", f"Weight: {unit.weight:g}"]
        if unit.preprocessor == "canny":
            parts += [f"Threshold A: {unit.canny_low}", f"Threshold B: {unit.canny_high}"]
        parts += [f"Guidance Start: {unit.guidance_start:g}", f"Guidance End: {unit.guidance_end:g}"]
        entries[f"ControlNet {index}"] = ", ".join(parts)
    return entries


def units_from_infotext(settings: dict[str, str]) -> list[dict[str, Any]]:
    """The ControlNet units an infotext records (without their images), for PNG info and 'send to'."""
    units = []
    for index in range(10):
        text = settings.get(f"ControlNet {index}")
        if not text:
            continue
        values = dict(part.split(": ", 1) for part in text.split(", ") if ": " in part)
        try:
            units.append({
                "model": values.get("Model", ""), "preprocessor": values.get("Module", "none"),
                "weight": float(values.get("Weight", 1)),
                "guidance_start": float(values.get("Guidance Start", 0)),
                "guidance_end": float(values.get("Guidance End", 1)),
                "canny_low": int(float(values.get("Threshold A", 100))),
                "canny_high": int(float(values.get("Threshold B", 200))),
            })
        except ValueError:
            log.warning("ignoring an unreadable ControlNet entry in an infotext: %r", text)
    return units
