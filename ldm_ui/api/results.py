"""A finished job -> AUTOMATIC1111's response: base64 images with their infotext, `parameters`, `info`.

Generation responses carry their images in the app's output format (samples_format, as AUTOMATIC1111 sends
them: PNG with a `parameters` chunk, JPEG/WebP with EXIF UserComment); progress previews are PNGs."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from typing import Any

from PIL import Image, PngImagePlugin

from ldm_ui.image_saving import image_bytes

from ldm_ui.metadata import parse_infotext
from ldm_ui.requests import GenerationRequest, Img2ImgRequest, Output
from ldm_ui.save_options import SaveOptions

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
                    interrupted: bool = False, styles: list[str] | None = None) -> dict[str, Any]:
    """The `info` object: AUTOMATIC1111's keys, filled from what ran (the infotexts), not from what was asked."""
    parsed = [parse_infotext(o.infotext) for o in outputs]
    first = parsed[0] if parsed else None
    settings = first.settings if first else {}
    width, height = (first.size() if first else None) or (request.width, request.height)
    seeds = [o.seed for o in outputs]
    variation = getattr(request, "variation", None)
    resize_from = (variation.resize_from if variation is not None else None) or (-1, -1)
    return {
        "prompt": first.prompt if first else request.prompt,
        "all_prompts": [p.prompt for p in parsed],
        "negative_prompt": request.negative_prompt,
        "all_negative_prompts": [p.negative_prompt for p in parsed],
        "seed": seeds[0] if seeds else request.seed,
        "all_seeds": seeds,
        "subseed": first.get_int("Variation seed", -1) if first else -1,
        "all_subseeds": [p.get_int("Variation seed", -1) for p in parsed],
        "subseed_strength": first.get_float("Variation seed strength", 0.0) if first else 0.0,
        "width": width, "height": height,
        "sampler_name": request.sampler, "cfg_scale": request.cfg_scale, "steps": request.steps,
        "batch_size": request.batch_size,
        "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": settings.get("Model"), "sd_model_hash": settings.get("Model hash"),
        "sd_vae_name": settings.get("VAE"), "sd_vae_hash": settings.get("VAE hash"),
        "seed_resize_from_w": resize_from[0], "seed_resize_from_h": resize_from[1],
        "denoising_strength": request.strength if isinstance(request, Img2ImgRequest) else None,
        "extra_generation_params": {k: v for k, v in settings.items()
                                    if k not in ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash",
                                                 "Model")},
        "index_of_first_image": 0,
        "infotexts": [o.infotext for o in outputs],
        "styles": list(styles or []),  # already merged into the prompts, as the UI merges them
        "job_timestamp": dt.datetime.now().strftime("%Y%m%d%H%M%S"),
        "clip_skip": int(settings.get("Clip skip", 1)),
        "is_using_inpainting_conditioning": False,
        "version": API_VERSION,
        # beyond AUTOMATIC1111: what was asked but not done, and whether the job was interrupted
        "ignored": ignored,
        "interrupted": interrupted,
        "saved_paths": [o.path for o in outputs if o.path],
    }


def image_base64(image: Image.Image, infotext: str, options: SaveOptions) -> str:
    """The image encoded as the app saves it (format, quality, infotext), base64."""
    return base64.b64encode(image_bytes(image, options, infotext)[0]).decode("ascii")


def generation_response(body, request: GenerationRequest, outputs: list[Output], ignored: list[str],
                        interrupted: bool = False, options: SaveOptions = SaveOptions()) -> dict[str, Any]:
    parameters = body.model_dump()
    if "init_images" in parameters and not parameters.get("include_init_images"):
        parameters["init_images"], parameters["mask"] = None, None  # as AUTOMATIC1111: not echoed back
    images = [image_base64(o.image, o.infotext, options) for o in outputs] if body.send_images else []
    info = generation_info(request, outputs, ignored, interrupted, getattr(body, "styles", None))
    return {"images": images, "parameters": parameters, "info": json.dumps(info, ensure_ascii=False)}
