"""/extra-single-image and /extra-batch-images: AUTOMATIC1111's Extras fields -> the Extras tab's UpscaleRequest.

The job runs in the engine's one queue like the tab's (so /progress and /interrupt see it); nothing is saved to
outputs/, as AUTOMATIC1111's API does not save Extras results. ldm-ui has no face restoration, so a non-zero
GFPGAN or CodeFormer visibility is refused rather than silently skipped.
"""

from __future__ import annotations

import html
from typing import Any

from ldm_ui.engine.upscalers import NO_UPSCALER
from ldm_ui.requests import MAX_UPSCALE_FACTOR, MAX_UPSCALED_SIDE, Output, RequestError, UpscaleRequest

from ldm_ui.api.results import png_base64
from ldm_ui.api.schemas import ExtrasBatchImagesBody, ExtrasBody, ExtrasSingleImageBody
from ldm_ui.api.settings import NotFound
from ldm_ui.api.translate import decode_image

RESIZE_MODES = {0: "scale by upscaling_resize", 1: "scale to upscaling_resize_w x upscaling_resize_h"}
FACE_RESTORERS = {"gfpgan_visibility": "GFPGAN", "codeformer_visibility": "CodeFormer"}


def upscaler_names(engine) -> list[str]:
    library = getattr(engine, "upscalers", None)
    return library.pixel_upscalers() if library is not None else []


def _upscaler(name: str | None, field: str, names: list[str], none_allowed: bool) -> str:
    text = (name or NO_UPSCALER).strip()
    if text == NO_UPSCALER or text == "":
        if none_allowed:
            return NO_UPSCALER
        raise RequestError(f"{field} is 'None': with no face restoration in ldm-ui there is nothing else to do; "
                           f"choose one of: {', '.join(names)}")
    by_lower = {n.lower(): n for n in names}
    if text.lower() not in by_lower:
        allowed = [NO_UPSCALER, *names] if none_allowed else names
        raise NotFound(f"unknown upscaler {text!r} in {field}; choose one of: {', '.join(allowed)}")
    return by_lower[text.lower()]


def _in_range(value: Any, field: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
        raise RequestError(f"{field} must be between {low:g} and {high:g}, got {shown}")
    return float(value)


def extras_request(body: ExtrasBody, images: tuple, engine) -> UpscaleRequest:
    for field, restorer in FACE_RESTORERS.items():
        if getattr(body, field):
            raise RequestError(f"{field}={getattr(body, field):g}: face restoration ({restorer}) is not available in "
                               f"ldm-ui; send 0")
    if body.resize_mode not in RESIZE_MODES:
        raise RequestError(f"resize_mode must be one of {', '.join(f'{k} ({v})' for k, v in RESIZE_MODES.items())}, "
                           f"got {body.resize_mode!r}")
    names = upscaler_names(engine)
    upscaler = _upscaler(body.upscaler_1, "upscaler_1", names, none_allowed=False)
    upscaler_2 = _upscaler(body.upscaler_2, "upscaler_2", names, none_allowed=True)
    visibility = _in_range(body.extras_upscaler_2_visibility, "extras_upscaler_2_visibility", 0, 1)
    scale, width, height = 2.0, 0, 0
    if body.resize_mode == 0:
        scale = _in_range(body.upscaling_resize, "upscaling_resize", 1, MAX_UPSCALE_FACTOR)
    else:
        if not body.upscaling_crop:
            raise RequestError("upscaling_crop=false is not built: ldm-ui upscales to cover "
                               "upscaling_resize_w x upscaling_resize_h and crops to it; send true")
        width = int(_in_range(body.upscaling_resize_w, "upscaling_resize_w", 1, MAX_UPSCALED_SIDE))
        height = int(_in_range(body.upscaling_resize_h, "upscaling_resize_h", 1, MAX_UPSCALED_SIDE))
    return UpscaleRequest(images=images, upscaler=upscaler, scale=scale, resize_width=width, resize_height=height,
                          upscaler_2=upscaler_2, upscaler_2_visibility=visibility, save_images=False)


def single_image_request(body: ExtrasSingleImageBody, engine) -> UpscaleRequest:
    return extras_request(body, (decode_image(body.image, "image"),), engine)


def batch_images_request(body: ExtrasBatchImagesBody, engine) -> UpscaleRequest:
    if not body.imageList:
        raise RequestError("imageList must hold at least one {data, name} image; got none")
    images = tuple(decode_image(item.data, f"imageList[{index}] ({item.name or 'no name'})")
                   for index, item in enumerate(body.imageList))
    return extras_request(body, images, engine)


def html_info(outputs: list[Output], interrupted: bool) -> str:
    """AUTOMATIC1111's html_info: the results' infotexts as HTML paragraphs (one per image), and an interrupt."""
    text = "".join(f"<p>{html.escape(o.infotext).replace(chr(10), '<br>')}</p>" for o in outputs)
    return text + (f"<p>Interrupted after {len(outputs)} image(s).</p>" if interrupted else "")


def single_image_response(outputs: list[Output], interrupted: bool) -> dict[str, Any]:
    """An interrupted job answers with image "" (as txt2img answers with no images) and says so in html_info."""
    image = png_base64(outputs[0].image, outputs[0].infotext) if outputs else ""
    return {"html_info": html_info(outputs, interrupted), "image": image}


def batch_images_response(outputs: list[Output], interrupted: bool) -> dict[str, Any]:
    return {"html_info": html_info(outputs, interrupted),
            "images": [png_base64(o.image, o.infotext) for o in outputs]}
