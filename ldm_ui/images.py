"""Open uploaded images safely: the one gate every decode of a file that strangers send goes through.

`install_decode_limit()` (called by app.create_app at start-up, never at import) makes Pillow itself refuse
any image over the same pixel limit, so a decode this module does not do (Gradio's image editor, a library)
is stopped too. `load_image` checks the size from the header before decoding a pixel; it also
refuses decompression bombs before decoding a pixel, refuses truncated files and non-images with a clear
message, applies the EXIF orientation a phone wrote, and turns every mode (CMYK, palette, LA, 16-bit, float)
into 8-bit RGB (or RGBA / L when asked), so the pipelines downstream see one kind of image.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from ldm_ui.requests import MAX_IMAGE_PIXELS, RequestError

MIN_SIDE_PX = 8
OUTPUT_MODES = ("RGB", "RGBA", "L")


class ImageUploadError(RequestError):
    """An upload that is not an image we can use; the message names it and says what is allowed."""


def install_decode_limit(max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Make every Pillow decode in the process refuse images over `max_pixels`.

    Pillow raises DecompressionBombError above twice its MAX_IMAGE_PIXELS and only warns between one and two
    times, so it is set to half our limit and its warning (which `load_image` makes redundant) is silenced.
    """
    Image.MAX_IMAGE_PIXELS = max_pixels // 2
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def check_image_file(source: Any, name: str = "image", max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file read from its header only; refuses bombs, non-images and data: URLs."""
    with _open(source, name, max_pixels) as image:
        _check_size(image, name, max_pixels)
        return image.size


def load_image(source: Any, name: str = "image", mode: str = "RGB", max_pixels: int = MAX_IMAGE_PIXELS,
               background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Open `source` (a path, bytes, a file object, a Gradio file dict or an already open PIL image) and
    return a fully decoded, upright image in `mode` (RGB, RGBA or L).

    Transparent pixels are laid over `background` when the result has no alpha channel.
    """
    if mode not in OUTPUT_MODES:
        raise ValueError(f"mode must be one of {OUTPUT_MODES}, got {mode!r}")
    if source is None:
        raise ImageUploadError(f"{name}: no image was given; upload a PNG, JPEG or WebP file")
    image = source if isinstance(source, Image.Image) else _open(source, name, max_pixels)
    _check_size(image, name, max_pixels)
    try:
        if getattr(image, "n_frames", 1) > 1:
            image.seek(0)  # animated GIF / APNG / multi-page TIFF: the first frame
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except Image.DecompressionBombError as error:
        raise _bomb(name, max_pixels, str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageUploadError(
            f"{name}: the file is truncated or corrupted ({error}); save it again and upload the whole file"
        ) from error
    return to_mode(image, mode, background)


def to_mode(image: Image.Image, mode: str = "RGB", background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, RGBA or L, scaling 16-bit and float data instead of clipping it."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit_gray(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if mode == "RGBA":
        return image.convert("RGBA")
    if has_alpha:
        rgba = image.convert("RGBA")
        flat = Image.new("RGBA", rgba.size, (*background, 255))
        flat.alpha_composite(rgba)
        image = flat
    return image.convert(mode)


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit grayscale to 8 bits: the whole 0..65535 (or 0..1 for float) range maps to 0..255."""
    import numpy as np

    data = np.asarray(image).astype(np.float64)
    if image.mode == "F":
        top = 1.0 if data.size and float(np.nanmax(data)) <= 1.0 else 65535.0
    else:
        top = 255.0 if data.size and float(data.max()) <= 255 else 65535.0
    scaled = np.clip(np.nan_to_num(data) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(scaled, mode="L")


def _open(source: Any, name: str, max_pixels: int) -> Image.Image:
    if isinstance(source, dict):  # a Gradio FileData-like dict
        source = source.get("url") if str(source.get("url") or "").startswith("data:") else (
            source.get("path") or source.get("name"))
    if isinstance(source, str) and source.startswith("data:"):
        raise ImageUploadError(f"{name}: data: URLs are not accepted; upload the image file instead")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageUploadError(f"{name}: {path.name!r} is not a file that can be read")
        stream: Any = path
    elif isinstance(source, (bytes, bytearray)):
        stream = io.BytesIO(source)
    elif hasattr(source, "read"):
        stream = source
    else:
        raise ImageUploadError(f"{name} must be an image file, got {type(source).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_size applies our limit
            return Image.open(stream)  # lazy: reads the header only, so the size check below costs nothing
    except Image.DecompressionBombError as error:  # Pillow's own limit (install_decode_limit) stopped the open
        found = re.search(r"\((\d+) pixels\)", str(error))
        raise _bomb(name, max_pixels, f"{int(found[1]):,} pixels" if found else str(error)) from error
    except UnidentifiedImageError as error:
        raise ImageUploadError(
            f"{name}: the file is not an image Pillow can read; upload a PNG, JPEG, WebP, BMP, GIF or TIFF file"
        ) from error
    except OSError as error:
        raise ImageUploadError(f"{name}: the file cannot be read as an image ({error})") from error


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise _bomb(name, max_pixels, f"{width}x{height} = {width * height:,} pixels")
    if width < MIN_SIDE_PX or height < MIN_SIDE_PX:
        raise ImageUploadError(f"{name} is {width}x{height}; images must be at least {MIN_SIDE_PX}x{MIN_SIDE_PX} pixels")


def _bomb(name: str, max_pixels: int, detail: str) -> ImageUploadError:
    return ImageUploadError(
        f"{name} is too large to decode safely ({detail}); the limit is {max_pixels:,} pixels "
        f"(e.g. {_side(max_pixels)}x{_side(max_pixels)}); resize it first"
    )


def _side(pixels: int) -> int:
    return int(pixels ** 0.5)
