"""The Extras tab's upscale: each image through one pixel upscaler (or two, blended), saved under outputs/extras.

Needs no diffusion model. The saved PNG keeps the source's own infotext (when it has one) and adds AUTOMATIC1111's
`Postprocess ...` keys, so PNG info still shows how the picture was made and how it was upscaled.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ldm_ui.engine.context import TaskContext
from ldm_ui.metadata import build_infotext, parse_infotext, read_infotext
from ldm_ui.requests import MAX_UPSCALE_IMAGES, Finished, Progress, RequestError, UpscaleRequest
from ldm_ui.safe_paths import resolve_inside

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
NO_UPSCALER = "None"


def folder_images(outputs_dir: Path, folder: str) -> list[Image.Image]:
    """The images directly inside `folder` (a folder inside the outputs), in name order."""
    path = resolve_inside(outputs_dir, folder, kind="outputs folder", directory=True)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise RequestError(f"outputs folder {folder!r} has no images ({', '.join(IMAGE_SUFFIXES)})")
    if len(files) > MAX_UPSCALE_IMAGES:
        raise RequestError(f"outputs folder {folder!r} has {len(files)} images; at most {MAX_UPSCALE_IMAGES} per job")
    images = []
    for file in files:
        try:
            with Image.open(file) as image:
                image.load()
                images.append(image.convert("RGB"))  # keeps the `parameters` text and the EXIF in .info
        except (UnidentifiedImageError, OSError) as error:
            raise RequestError(f"{file.name} in {folder!r} could not be read as an image: {error}") from None
    return images


def extras_infotext(source: Image.Image, request: UpscaleRequest, size: tuple[int, int]) -> tuple[str, int]:
    """(infotext, seed): the source's parameters with the Postprocess keys added, and its seed (-1 if none)."""
    info = parse_infotext(read_infotext(source) or "")
    # a source without parameters still gets a settings line a parser recognises (it wants three keys or more)
    settings = dict(info.settings) or {"Size": f"{size[0]}x{size[1]}"}
    if request.resize_width or request.resize_height:
        settings["Postprocess upscale to"] = f"{size[0]}x{size[1]}"
    else:
        settings["Postprocess upscale by"] = f"{request.scale:g}"
    settings["Postprocess upscaler"] = request.upscaler
    if request.upscaler_2 != NO_UPSCALER and request.upscaler_2_visibility > 0:
        settings["Postprocess upscaler 2"] = request.upscaler_2
        settings["Postprocess upscaler 2 visibility"] = f"{request.upscaler_2_visibility:g}"
    return build_infotext(info.prompt, info.negative_prompt, settings), info.get_int("Seed", -1)


def upscale_one(ctx: TaskContext, image: Image.Image) -> Image.Image:
    request, upscalers = ctx.request, ctx.upscalers
    upscaled, final = request.sizes(*image.size)
    result = upscalers.upscale(image, request.upscaler, *upscaled, check_cancel=ctx.check_cancel)
    if request.upscaler_2 != NO_UPSCALER and request.upscaler_2_visibility > 0:
        second = upscalers.upscale(image, request.upscaler_2, *upscaled, check_cancel=ctx.check_cancel)
        result = Image.blend(result, second, request.upscaler_2_visibility)
    left, top = (upscaled[0] - final[0]) // 2, (upscaled[1] - final[1]) // 2
    return result.crop((left, top, left + final[0], top + final[1])) if upscaled != final else result


def run(ctx: TaskContext) -> Finished:
    request: UpscaleRequest = ctx.request
    names = ctx.upscalers.pixel_upscalers()
    ctx.upscalers.check_name(request.upscaler, names)
    if request.upscaler_2 != NO_UPSCALER:
        ctx.upscalers.check_name(request.upscaler_2, [NO_UPSCALER, *names])
    sources = list(request.images) if request.images else folder_images(ctx.config.outputs_dir, request.folder)
    for image in sources:
        request.sizes(*image.size)  # a folder's images meet the size limit before any work starts
    folder = ctx.output_folder("extras")
    outputs = []
    for index, source in enumerate(sources):
        ctx.check_cancel()
        ctx.emit(Progress(step=index, steps=len(sources), batch_index=0, batch_count=1, it_per_s=0.0, eta_s=0.0,
                          message=f"Upscaling image {index + 1}/{len(sources)} with {request.upscaler}"))
        result = upscale_one(ctx, source.convert("RGB") if source.mode != "RGB" else source)
        infotext, seed = extras_infotext(source, request, result.size)
        outputs.append(ctx.save(result, folder, "extras", infotext, seed))
    sizes = sorted({o.image.size for o in outputs})
    size_text = ", ".join(f"{w}x{h}" for w, h in sizes)
    return Finished(outputs=outputs, summary=f"Upscaled to {size_text} with {request.upscaler}; saved under "
                                             f"{folder}.")
