"""AUTOMATIC1111 request fields -> ldm-ui's typed requests (ldm_ui/requests.py).

Everything a request field means is decided here, once: sampler + scheduler names, the img2img/inpaint integer
codes, override_settings, and ControlNet units as the ControlNet extension sends them. Fields for features
ldm-ui does not have are not faked: they are listed in `Translation.ignored`, which the response's info reports,
and the infotext only records what really ran.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.images import load_image
from ldm_ui.requests import (
    ControlNetUnit, GenerationRequest, HiresFix, Img2ImgRequest, InpaintRequest, LoadModelRequest, RefinerSettings,
    Request, RequestError, SetVaeRequest, Txt2ImgRequest, VariationSeed,
)

from ldm_ui.api.schemas import GenerationBody, Img2ImgBody, Txt2ImgBody
from ldm_ui.api.settings import ApiSettings, NotFound, resolve_vae, styled_prompts


# A1111's scheduler names (and labels) -> the suffix our sampler names carry; automatic keeps the sampler's own
SCHEDULERS = {"automatic": "", "karras": " Karras"}
# the k-diffusion aliases AUTOMATIC1111 also accepts
SAMPLER_ALIASES = {
    "Euler a": ["k_euler_a", "k_euler_ancestral"], "Euler": ["k_euler"], "LMS": ["k_lms"], "Heun": ["k_heun"],
    "DPM++ 2M": ["k_dpmpp_2m"], "DPM++ 2M Karras": ["k_dpmpp_2m_ka"], "DPM++ SDE Karras": ["k_dpmpp_sde_ka"],
    "DPM++ 2M SDE Karras": ["k_dpmpp_2m_sde_ka"], "DDIM": ["ddim"], "UniPC": ["unipc"], "LCM": ["k_lcm", "lcm"],
}
RESIZE_MODES = {0: "just resize", 1: "crop and resize", 2: "resize and fill"}
INPAINTING_FILLS = {0: "fill", 1: "original", 2: "latent noise", 3: "latent nothing"}
# the ControlNet extension's preprocessor ("module") names -> ours
CONTROLNET_MODULES = {"none": "none", "canny": "canny", "invert (from white bg & black line)": "invert",
                      "invert": "invert", "lineart_standard (from white bg & black line)": "lineart_standard"}
_HASH_SUFFIX = re.compile(r"\s*\[[0-9a-fA-F]{8,64}\]\s*$")


@dataclass
class Overrides:
    """What override_settings asks besides the job's own fields (override_settings_restore_afterwards decides)."""

    before: list[Request] = field(default_factory=list)  # queued just before the job: a VAE choice that stays
    after: list[Request] = field(default_factory=list)  # queued right behind it: the previous model back
    remember: dict[str, Any] = field(default_factory=dict)  # ApiSettings values that stay (clip_skip)


@dataclass
class Translation:
    request: GenerationRequest
    ignored: list[str] = field(default_factory=list)  # "field: why", reported in the response's info
    overrides: Overrides = field(default_factory=Overrides)


def strip_hash(title: str) -> str:
    """'name.safetensors [0123abcd]' (an A1111 title) -> 'name.safetensors'."""
    return _HASH_SUFFIX.sub("", title).strip()


def sampler_name(sampler: str | None, scheduler: str | None) -> str:
    """Our sampler name for A1111's sampler_name (+ scheduler), or NotFound naming both and what exists."""
    name = (sampler or "").strip()
    by_lower = {n.lower(): n for n in SAMPLER_NAMES}
    by_lower.update({alias: n for n, aliases in SAMPLER_ALIASES.items() for alias in aliases})
    base = by_lower.get(name.lower())
    if base is None:
        raise NotFound(f"unknown sampler {name!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
    schedule = (scheduler or "automatic").strip().lower()
    if schedule not in SCHEDULERS:
        raise NotFound(f"unknown scheduler {scheduler!r}; choose one of: {', '.join(SCHEDULERS)} "
                       "(ldm-ui's samplers carry their schedule in their name, such as 'DPM++ 2M Karras')")
    if not SCHEDULERS[schedule] or base.endswith(SCHEDULERS[schedule]):
        return base
    combined = base + SCHEDULERS[schedule]
    if combined not in SAMPLER_NAMES:
        raise NotFound(f"sampler {base!r} with scheduler {scheduler!r} is not available; choose one of: "
                       f"{', '.join(SAMPLER_NAMES)} (with scheduler 'automatic')")
    return combined


def decode_image(data: Any, name: str, mode: str = "RGB") -> Image.Image:
    """A base64 image (raw, or a data: URL as browsers write it) -> a checked, decoded PIL image."""
    if not isinstance(data, str) or not data.strip():
        raise RequestError(f"{name} must be a base64-encoded image, got {type(data).__name__ if data else 'nothing'}")
    text = data.strip()
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        raw = base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"{name} is not valid base64 ({error})") from None
    return load_image(raw, name=name, mode=mode)


def resolve_model(engine, title: str) -> str:
    """A model title from /sd-models (or a plain name) -> the model name; NotFound with the list."""
    name = strip_hash(str(title))
    names = engine.models.model_names()
    if name in names:
        return name
    lower = {n.lower(): n for n in names}
    if name.lower() in lower:
        return lower[name.lower()]
    raise NotFound(f"unknown model {title!r}; choose one of: {', '.join(names) or 'none found'}")


def common_fields(body: GenerationBody, engine, ignored: list[str], settings: ApiSettings,
                  overrides: Overrides) -> dict[str, Any]:
    """Request fields every generation task takes, from the A1111 body; notes what ldm-ui leaves out.

    override_settings (sd_model_checkpoint, sd_vae, CLIP_stop_at_last_layers) apply to this request only when
    override_settings_restore_afterwards is true (the default, as in AUTOMATIC1111): the previous model is queued
    back right behind the job, the VAE goes with the request (the engine puts the previous one back after it), and
    clip skip is the request's own. With false they stay: the model stays loaded, the VAE is chosen through the
    queue before the job, and clip skip becomes the API's setting.
    """
    values = dict(body.override_settings or {})
    restore = body.override_settings_restore_afterwards
    current = engine.models.current
    # the loaded model, as in AUTOMATIC1111 (a request without a model would load the --model default)
    loaded = current.entry.name if current else None
    model = loaded
    if values.get("sd_model_checkpoint"):
        model = resolve_model(engine, values.pop("sd_model_checkpoint"))
        if restore and loaded and model != loaded:
            overrides.after.append(LoadModelRequest(model=loaded))
    values.pop("sd_model_checkpoint", None)
    # a value outside 1-12 is refused by the request, with the range named
    clip_skip = values.pop("CLIP_stop_at_last_layers", None)
    if clip_skip is None:  # the API's own (POST /options), else the remembered default (named, for Ray replicas)
        clip_skip = settings.clip_skip if settings.clip_skip is not None else engine.config.clip_skip
    elif not restore:
        overrides.remember["clip_skip"] = clip_skip
    vae = None
    if values.get("sd_vae") is not None:
        choice = resolve_vae(engine.config, values.pop("sd_vae"))
        if restore:
            vae = choice
        else:
            overrides.before.append(SetVaeRequest(vae=choice, model=model))
    values.pop("sd_vae", None)
    ignored.extend(f"override_settings.{key}: not an ldm-ui setting" for key in values)
    prompt, negative_prompt = body.prompt, body.negative_prompt
    if body.styles:
        prompt, negative_prompt = styled_prompts(engine.config, prompt, negative_prompt, body.styles)
    for flag in ("restore_faces", "tiling"):
        if getattr(body, flag):
            ignored.append(f"{flag}: not built in ldm-ui")
    if body.script_name:
        ignored.append(f"script_name={body.script_name!r}: ldm-ui runs no AUTOMATIC1111 scripts")
    return dict(
        prompt=prompt, negative_prompt=negative_prompt, model=model,
        sampler=sampler_name(body.sampler_name or body.sampler_index or "Euler", body.scheduler),
        steps=body.steps, cfg_scale=body.cfg_scale, width=body.width, height=body.height, seed=body.seed,
        batch_count=body.n_iter, batch_size=body.batch_size, save_images=bool(body.save_images),
        clip_skip=clip_skip, vae=vae,
    )


def variation_seed(body: GenerationBody) -> VariationSeed | None:
    """subseed, subseed_strength and seed_resize_from_w/h (-1 or 0: off) as our VariationSeed."""
    resize = (max(body.seed_resize_from_w, 0), max(body.seed_resize_from_h, 0))
    if not body.subseed_strength and resize == (0, 0):
        return None
    return VariationSeed(seed=body.subseed, strength=_number(body.subseed_strength, "subseed_strength"),
                         resize_from_width=resize[0], resize_from_height=resize[1])


def refiner_settings(body: GenerationBody, engine) -> RefinerSettings | None:
    """refiner_checkpoint (a name or an /sd-models title; None, "" or "None": no refiner) and refiner_switch_at."""
    checkpoint = body.refiner_checkpoint
    if checkpoint is None or checkpoint.strip().lower() in ("", "none"):
        return None
    switch = 0.8 if body.refiner_switch_at is None else _number(body.refiner_switch_at, "refiner_switch_at")
    return RefinerSettings(checkpoint=resolve_model(engine, checkpoint), switch_at=switch)


def controlnet_units(body: GenerationBody, engine, ignored: list[str],
                     default_image: Image.Image | None = None) -> tuple[ControlNetUnit, ...]:
    """alwayson_scripts.controlnet.args: units as the ControlNet extension defines them (dicts)."""
    from ldm_ui.engine.controlnet import resolve_controlnet

    scripts = {str(k).lower(): v for k, v in (body.alwayson_scripts or {}).items()}
    ignored.extend(f"alwayson_scripts.{name}: ldm-ui has no such extension" for name in scripts if name != "controlnet")
    script = scripts.get("controlnet")
    args = script.get("args", []) if isinstance(script, dict) else []
    if not isinstance(args, list):
        raise RequestError(f"alwayson_scripts.controlnet.args must be a list of units, got {type(args).__name__}")
    units = []
    for number, unit in enumerate(args, start=1):
        where = f"ControlNet unit {number}"
        if not isinstance(unit, dict):
            raise RequestError(f"{where} must be an object with image, module, model, weight, ...; got {unit!r:.60}")
        model = strip_hash(str(unit.get("model") or "None"))
        if not unit.get("enabled", True) or model in ("None", ""):
            continue
        module = str(unit.get("module") or "none").strip()
        preprocessor = CONTROLNET_MODULES.get(module.lower(), module)
        image_data = unit.get("image") or unit.get("input_image")
        if isinstance(image_data, dict):  # {"image": b64, "mask": b64}, as the extension's newer versions send
            image_data = image_data.get("image")
        image = decode_image(image_data, f"{where} image") if image_data else default_image
        if image is None:
            raise RequestError(f"{where} has no image: send one in 'image' (base64)")
        entry = resolve_controlnet(engine.config, model)
        low, high = unit.get("threshold_a"), unit.get("threshold_b")
        canny = {}
        if preprocessor == "canny" and low not in (None, -1) and high not in (None, -1):
            canny = {"canny_low": _number(low, f"{where} threshold_a", int),
                     "canny_high": _number(high, f"{where} threshold_b", int)}
        control_mode = unit.get("control_mode", "Balanced")
        if control_mode not in (0, "Balanced"):
            ignored.append(f"{where} control_mode={control_mode!r}: only Balanced is built")
        units.append(ControlNetUnit(
            model=entry.name, image=image, preprocessor=preprocessor,
            weight=_number(unit.get("weight", 1.0), f"{where} weight"),
            guidance_start=_number(unit.get("guidance_start", 0.0), f"{where} guidance_start"),
            guidance_end=_number(unit.get("guidance_end", 1.0), f"{where} guidance_end"),
            **canny,
        ))
    return tuple(units)


def _number(value: Any, name: str, kind: type = float) -> Any:
    """A unit's number (the extension's units are free-form dicts, so their types are checked here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name} must be a number, got {value!r}")
    if kind is int and value != int(value):
        raise RequestError(f"{name} must be a whole number, got {value!r}")
    return kind(value)


def hires_fix(body: Txt2ImgBody, ignored: list[str]) -> HiresFix:
    """AUTOMATIC1111's hr_* fields as our HiresFix (its defaults: Latent, x2, the first pass's steps, 0.7)."""
    if body.hr_checkpoint_name not in (None, "", "Use same checkpoint"):
        ignored.append(f"hr_checkpoint_name={body.hr_checkpoint_name!r}: the hires pass uses the loaded model")
    strength = body.denoising_strength if body.denoising_strength is not None else 0.7
    sampler = sampler_name(body.hr_sampler_name, body.hr_scheduler) if body.hr_sampler_name else None
    return HiresFix(upscaler=body.hr_upscaler or "Latent", scale=_number(body.hr_scale, "hr_scale"),
                    resize_width=_number(body.hr_resize_x, "hr_resize_x", int),
                    resize_height=_number(body.hr_resize_y, "hr_resize_y", int),
                    steps=_number(body.hr_second_pass_steps, "hr_second_pass_steps", int),
                    denoising_strength=_number(strength, "denoising_strength"), sampler=sampler,
                    prompt=body.hr_prompt or "", negative_prompt=body.hr_negative_prompt or "")


def txt2img_request(body: Txt2ImgBody, engine, settings: ApiSettings | None = None) -> Translation:
    ignored: list[str] = []
    overrides = Overrides()
    fields = common_fields(body, engine, ignored, settings or ApiSettings(), overrides)
    hires = hires_fix(body, ignored) if body.enable_hr else None
    request = Txt2ImgRequest(**fields, controlnets=controlnet_units(body, engine, ignored), hires=hires,
                             variation=variation_seed(body), refiner=refiner_settings(body, engine))
    return Translation(request, ignored, overrides)


def img2img_request(body: Img2ImgBody, engine, settings: ApiSettings | None = None) -> Translation:
    ignored: list[str] = []
    overrides = Overrides()
    fields = common_fields(body, engine, ignored, settings or ApiSettings(), overrides)
    if not body.init_images:
        raise RequestError("init_images must hold one base64 image; got none")
    if len(body.init_images) > 1:
        ignored.append(f"init_images: {len(body.init_images)} images sent; ldm-ui uses the first")
    init_image = decode_image(body.init_images[0], "init_images[0]")
    if body.resize_mode not in RESIZE_MODES:
        raise RequestError(f"resize_mode must be one of {', '.join(f'{k} ({v})' for k, v in RESIZE_MODES.items())}, "
                           f"got {body.resize_mode!r}")
    if body.image_cfg_scale is not None:
        ignored.append("image_cfg_scale: instruct-pix2pix models are not built")
    if body.initial_noise_multiplier not in (None, 1, 1.0):
        ignored.append("initial_noise_multiplier: not built; the noise was not scaled")
    common = dict(fields, init_image=init_image, strength=body.denoising_strength,
                  resize_mode=RESIZE_MODES[body.resize_mode], variation=variation_seed(body),
                  controlnets=controlnet_units(body, engine, ignored, default_image=init_image))
    refiner = refiner_settings(body, engine)
    if not body.mask:
        return Translation(Img2ImgRequest(**common, refiner=refiner), ignored, overrides)
    if refiner is not None:
        ignored.append(f"refiner_checkpoint={body.refiner_checkpoint!r}: inpainting (img2img with a mask) runs "
                       "without the refiner")
    if body.inpainting_fill not in INPAINTING_FILLS:
        raise RequestError(f"inpainting_fill must be one of "
                           f"{', '.join(f'{k} ({v})' for k, v in INPAINTING_FILLS.items())}, got {body.inpainting_fill!r}")
    if body.inpainting_mask_invert not in (0, 1):
        raise RequestError(f"inpainting_mask_invert must be 0 or 1, got {body.inpainting_mask_invert!r}")
    blur = body.mask_blur if body.mask_blur is not None else max(body.mask_blur_x, body.mask_blur_y)
    if body.mask_blur is None and body.mask_blur_x != body.mask_blur_y:
        ignored.append(f"mask_blur_x/mask_blur_y: one blur radius is built; used {blur}")
    request = InpaintRequest(
        **common, mask=decode_image(body.mask, "mask", mode="L"), mask_blur_px=blur,
        invert_mask=bool(body.inpainting_mask_invert), masked_content=INPAINTING_FILLS[body.inpainting_fill],
        inpaint_area="only masked" if body.inpaint_full_res else "whole picture",
        only_masked_padding_px=body.inpaint_full_res_padding,
    )
    return Translation(request, ignored, overrides)
