"""Write a finished image with its infotext: PNG, JPEG or WebP, under a fresh numbered name, atomically.

Where the infotext goes, as AUTOMATIC1111 writes it (so its PNG info, ours and the API's /png-info read it back):
- PNG: a `parameters` text chunk;
- JPEG and WebP: EXIF UserComment, `UNICODE\\0` + UTF-16 big-endian (what piexif's UserComment.dump writes).

JPEG has no alpha channel: a transparent image is flattened onto white (transparent pixels become white, half
transparent ones are blended) before it is encoded. WebP keeps the alpha. When a format cannot hold an image
(JPEG above 65,500 px a side, WebP above 16,383, or an infotext longer than JPEG's 64 KB EXIF segment holds), the
image is saved as PNG instead, with a warning in the log, rather than losing its pixels or its infotext.

A name is claimed only once the file is complete (a temp file in the same folder, linked exclusively), so no
reader ever sees half an image and no file is ever overwritten; with save_txt the `.txt` beside it is claimed the
same way, and a name is taken only when both are free.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import re
import struct
import tempfile
import threading
from pathlib import Path

from PIL import Image, PngImagePlugin

from ldm_ui.metadata import EXIF_IFD, USER_COMMENT, parse_infotext
from ldm_ui.save_options import PatternValues, SaveOptions, expand_pattern, sanitize_name_part

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MAX_JPEG_SIDE, MAX_WEBP_SIDE = 65500, 16383
MAX_JPEG_EXIF_BYTES = 65533  # one APP1 segment, its length field included

_save_lock = threading.Lock()
# folder -> the number the next image there gets: listing a day's folder of thousands of images for every save
# would cost more than the save; another writer's files are still never overwritten (the link is exclusive)
_next_numbers: dict[Path, int] = {}
_NUMBERED = re.compile(r"(\d{5,})-")


def user_comment_exif(infotext: str) -> bytes:
    """EXIF bytes holding `infotext` as UserComment, in the encoding AUTOMATIC1111 writes (and reads) it.

    Written by hand: Pillow's Exif.tobytes types a bytes value BYTE, and piexif (AUTOMATIC1111's reader) reads a
    BYTE UserComment as a tuple of numbers and fails; the EXIF spec says UNDEFINED (type 7), as piexif writes it.
    The layout: a big-endian TIFF header, IFD0 with one entry (the Exif IFD's offset), the Exif IFD with one
    entry (UserComment), then the comment's bytes."""
    comment = b"UNICODE\0" + infotext.encode("utf-16-be")
    exif_ifd_at = 8 + 2 + 12 + 4  # header, IFD0's entry count, its one entry, its next-IFD offset
    comment_at = exif_ifd_at + 2 + 12 + 4
    header = b"MM\x00\x2a" + struct.pack(">L", 8)
    ifd0 = struct.pack(">HHHLLL", 1, EXIF_IFD, 4, 1, exif_ifd_at, 0)  # one LONG entry, no next IFD
    exif_ifd = struct.pack(">HHHLLL", 1, USER_COMMENT, 7, len(comment), comment_at, 0)  # one UNDEFINED entry
    return b"Exif\x00\x00" + header + ifd0 + exif_ifd + comment


def flatten_for_jpeg(image: Image.Image) -> Image.Image:
    """An RGB (or grey) image JPEG can hold: transparency composited onto white."""
    if image.mode in ("RGB", "L"):
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def fitting_format(image: Image.Image, wanted: str, infotext: str) -> tuple[str, str | None]:
    """The format the image is written in (the wanted one, or png) and why it is not the wanted one."""
    side = max(image.size)
    if wanted == "jpg" and side > MAX_JPEG_SIDE:
        return "png", f"JPEG holds at most {MAX_JPEG_SIDE} px a side, this image is {image.width}x{image.height}"
    if wanted == "webp" and side > MAX_WEBP_SIDE:
        return "png", f"WebP holds at most {MAX_WEBP_SIDE} px a side, this image is {image.width}x{image.height}"
    if wanted == "jpg" and len(user_comment_exif(infotext)) > MAX_JPEG_EXIF_BYTES:
        return "png", f"its infotext ({len(infotext)} characters) does not fit in JPEG's EXIF segment"
    return wanted, None


def encode_image(image: Image.Image, file_format: str, quality: int, infotext: str | None, handle) -> None:
    """Write `image` to the binary `handle` as png/jpg/webp, with the infotext where AUTOMATIC1111 puts it."""
    if file_format == "png":
        pnginfo = None
        if infotext:
            pnginfo = PngImagePlugin.PngInfo()
            pnginfo.add_text("parameters", infotext)
        image.save(handle, format="PNG", pnginfo=pnginfo)
        return
    extra = {"exif": user_comment_exif(infotext)} if infotext else {}
    if file_format == "jpg":
        flatten_for_jpeg(image).save(handle, format="JPEG", quality=quality, **extra)
    else:
        webp = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA" if "A" in image.getbands() else "RGB")
        webp.save(handle, format="WEBP", quality=quality, **extra)


def image_bytes(image: Image.Image, options: SaveOptions, infotext: str | None) -> tuple[bytes, str]:
    """The encoded image in the options' format (or png where that format cannot hold it) and its extension."""
    file_format, why = fitting_format(image, options.format, infotext or "")
    if why:
        log.warning("saving as PNG, not %s: %s", options.format.upper(), why)
    buffer = io.BytesIO()
    encode_image(image, file_format, options.quality, infotext, buffer)
    return buffer.getvalue(), file_format


def name_part(options: SaveOptions, stem: str, infotext: str, now: dt.datetime | None = None) -> str:
    """What follows the running number: the expanded filename pattern, or the task's stem without one."""
    if options.filename_pattern:
        info = parse_infotext(infotext)
        expanded = expand_pattern(options.filename_pattern, PatternValues(info.prompt, info.settings,
                                                                          now or dt.datetime.now()))
        if expanded:
            return expanded
    return sanitize_name_part(stem) or "image"


def save_image(image: Image.Image, folder: Path, stem: str, infotext: str,
               options: SaveOptions = SaveOptions()) -> Path:
    """Save under a fresh numbered name in `folder` (`00012-<name>.<ext>`), and the infotext as `<same>.txt` when
    the options say so; the image's path."""
    folder.mkdir(parents=True, exist_ok=True)
    data, file_format = image_bytes(image, options, infotext)
    name = name_part(options, stem, infotext)
    temps = [_complete_temp(folder, data, "." + file_format)]
    if options.save_txt:
        temps.append(_complete_temp(folder, infotext.encode("utf-8"), ".txt"))
    try:
        with _save_lock:
            number = _next_numbers.get(folder)
            if number is None:
                number = _next_number(folder)
            while True:
                target = folder / f"{number:05d}-{name}.{file_format}"
                if _claim_all(temps, [target, target.with_name(target.stem + ".txt")]):
                    break
                number += 1
            _next_numbers[folder] = number + 1
    finally:
        for tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _complete_temp(folder: Path, data: bytes, suffix: str) -> str:
    fd, tmp = tempfile.mkstemp(prefix=".saving-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _claim_all(temps: list[str], targets: list[Path]) -> bool:
    """Give each finished temp file its name; all or none (False when a name is taken)."""
    if any(target.exists() for target in targets[:len(temps)]):  # the usual case, without a claim to undo
        return False
    claimed: list[Path] = []
    for tmp, target in zip(temps, targets):
        try:
            _claim(tmp, target)
        except FileExistsError:
            for path in claimed:  # ours, just made: give the name back
                path.unlink()
            return False
        claimed.append(target)
    return True


def _claim(tmp: str, target: Path) -> None:
    """Give the finished temp file its final name; raise FileExistsError if that name is taken."""
    try:
        os.link(tmp, target)  # atomic and exclusive: two writers never share a file
    except FileExistsError:
        raise
    except OSError:  # filesystems without hard links: reserve the name, then rename over it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, target)


def _next_number(folder: Path) -> int:
    """One past the highest running number of any file in `folder` (every format, and .txt files)."""
    numbers = [int(match[1]) for entry in os.scandir(folder) if (match := _NUMBERED.match(entry.name))]
    return max(numbers, default=-1) + 1
