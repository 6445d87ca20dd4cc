"""A finished job -> AUTOMATIC1111's response: base64 PNGs with their infotext chunk, `parameters`, `info`."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from typing import Any

from PIL import Image, PngImagePlugin

from ldm_ui.metadata import generation_fields, parse_infotext
from ldm_ui.requests import GenerationRequest, Img2ImgRequest, Output

API_VERSION = "ldm-ui"


def png_base64(image: Image.Image, infotext: str | None = None) -> str:
    """PNG bytes, base64 (no data: prefix, as AUTOMATIC1111 sends them), with the `parameters` chunk if given."""
    pnginfo = None
    if infotext:
        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=pnginfo)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def generation_info(request: GenerationRequest, outputs: list[Output], ignored: list[str],
                    interrupted: bool = False, styles: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The `info` object: AUTOMATIC1111's keys, filled from what ran (the infotexts), not from what was asked."""
    parsed = [parse_infotext(o.infotext) for o in outputs]
    first = parsed[0] if parsed else None
    settings = first.settings if first else {}
    width, height = (first.size() if first else None) or (request.width, request.height)
    seeds = [o.seed for o in outputs]
    subseeds = [p.get_int("Variation seed") for p in parsed]
    subseeds = [seed for seed in subseeds if seed is not None]  # written only when the strength is above 0
    fields = generation_fields(first)[0] if first else {}
    resize_from = (fields.get("resize_from_width", -1), fields.get("resize_from_height", -1))
    return {
        "prompt": first.prompt if first else request.prompt,
        "all_prompts": [p.prompt for p in parsed],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [p.negative_prompt for p in parsed],
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "subseed": subseeds[0] if subseeds else -1, "all_subseeds": subseeds or [-1] * len(seeds),
        "subseed_strength": float(settings.get("Variation seed strength", 0) or 0),
        "width": width, "height": height,
        "sampler_name": request.sampler, "cfg_scale": request.cfg_scale, "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": settings.get("Model"), "sd_model_hash": settings.get("Model hash"),
        "sd_vae_name": None, "sd_vae_hash": None,
        "seed_resize_from_w": resize_from[0], "seed_resize_from_h": resize_from[1],
        "denoising_strength": request.strength if isinstance(request, Img2ImgRequest) else None,
        "extra_generation_params": {k: v for k, v in settings.items()
                                    if k not in ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash",
                                                 "Model")},
        "index_of_first_image": 0,
        "infotexts": [o.infotext for o in outputs],
        "styles": list(styles),
        "job_timestamp": dt.datetime.now().strftime("%Y%m%d%H%M%S"),
        "clip_skip": int(settings.get("Clip skip", 1)),
        "is_using_inpainting_conditioning": False,
        "version": API_VERSION,
        # beyond AUTOMATIC1111: what was asked but not done, and whether the job was interrupted
        "ignored": ignored,
        "interrupted": interrupted,
        "saved_paths": [o.path for o in outputs if o.path],
    }


def generation_response(body, request: GenerationRequest, outputs: list[Output], ignored: list[str],
                        interrupted: bool = False) -> dict[str, Any]:
    parameters = body.model_dump()
    if "init_images" in parameters and not parameters.get("include_init_images"):
        parameters["init_images"], parameters["mask"] = None, None  # as AUTOMATIC1111: not echoed back
    images = [png_base64(o.image, o.infotext) for o in outputs] if body.send_images else []
    info = generation_info(request, outputs, ignored, interrupted, styles=body.styles or ())
    return {"images": images, "parameters": parameters, "info": json.dumps(info, ensure_ascii=False)}
