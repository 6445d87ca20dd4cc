"""How finished images are written: file format and quality, the filename pattern, the infotext beside as .txt.

Standard library only (AppConfig holds a SaveOptions, and the starting page imports the config before anything
heavy). The writing itself is `ldm_ui/image_saving.py`.

A filename pattern is AUTOMATIC1111's `samples_filename_pattern`: literal text and `[tag]`s filled from the
image's infotext. The running number always comes first (`00012-<pattern>.png`), so names sort in the order
they were made and two images never share one; an empty pattern keeps the task's own name (the seed for
txt2img/img2img/inpaint, `frame` for interpolation, `extras` for upscales).
"""

from __future__ import annotations

import datetime as dt
import re
import string
from dataclasses import dataclass
from typing import Callable

# the file extensions images are saved with; "jpeg" is accepted as another name for "jpg" (AUTOMATIC1111 takes both)
SAMPLE_FORMATS = ("png", "jpg", "webp")
FORMAT_ALIASES = {"jpeg": "jpg"}
MAX_PATTERN_CHARS = 200
# the expanded part of a name: ext4 and NTFS allow 255 bytes; the number, dash and extension take up to 11
MAX_NAME_PART_BYTES = 180
MAX_PROMPT_WORDS = 8  # AUTOMATIC1111's directories_max_prompt_words default
_TAG = re.compile(r"\[([^\[\]]*)\]")
# characters no file name may hold on Linux, macOS or Windows, path separators first; control characters too
_FORBIDDEN = set('/\\<>:"|?*') | {chr(c) for c in range(32)} | {"\x7f"}
_NOT_WORD = re.compile(r"[\s" + re.escape(string.punctuation) + r"]+")


class SaveOptionError(ValueError):
    """A format, quality or filename pattern that cannot be used; the message names it and what is allowed."""


@dataclass(frozen=True)
class PatternValues:
    """What a pattern's tags are filled from: the image's infotext (prompt and `Key: value` settings) and when
    it was saved."""

    prompt: str
    settings: dict[str, str]
    now: dt.datetime


def _size(values: PatternValues, index: int) -> str | None:
    match = re.fullmatch(r"(\d+)x(\d+)", values.settings.get("Size", "").strip())
    return match[index] if match else None


def prompt_words(prompt: str) -> str:
    """The prompt's first words without punctuation (`(masterpiece:1.2), a cat` -> `masterpiece 1 2 a cat`)."""
    return " ".join([word for word in _NOT_WORD.split(prompt) if word][:MAX_PROMPT_WORDS])


TAGS: dict[str, Callable[[PatternValues], str | None]] = {
    "seed": lambda v: v.settings.get("Seed"),
    "prompt": lambda v: " ".join(v.prompt.split()),
    "prompt_words": lambda v: prompt_words(v.prompt),
    "model_name": lambda v: v.settings.get("Model"),
    "model_hash": lambda v: v.settings.get("Model hash"),
    "sampler": lambda v: v.settings.get("Sampler"),
    "steps": lambda v: v.settings.get("Steps"),
    "cfg": lambda v: v.settings.get("CFG scale"),
    "width": lambda v: _size(v, 1),
    "height": lambda v: _size(v, 2),
    "datetime": lambda v: v.now.strftime("%Y%m%d%H%M%S"),
    "date": lambda v: v.now.strftime("%Y-%m-%d"),
}
ALLOWED_TAGS = ", ".join(f"[{name}]" for name in TAGS)


def check_pattern(pattern: object) -> str:
    """The pattern, or SaveOptionError naming the first unknown tag and listing the allowed ones."""
    if not isinstance(pattern, str):
        raise SaveOptionError(f"filename pattern must be text, got {pattern!r}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise SaveOptionError(f"filename pattern must be at most {MAX_PATTERN_CHARS} characters, got {len(pattern)}")
    unknown = [match[0] for match in _TAG.finditer(pattern) if match[1].strip().lower() not in TAGS]
    if unknown:
        raise SaveOptionError(f"filename pattern {pattern!r}: unknown tag {unknown[0]}; allowed tags: {ALLOWED_TAGS}")
    return pattern


def sanitize_name_part(text: str) -> str:
    """`text` as part of one file name: separators and characters no file system allows become `_`, surrounding
    spaces and dots go, and it is cut to MAX_NAME_PART_BYTES of UTF-8 (never inside a character)."""
    cleaned = "".join("_" if ch in _FORBIDDEN else ch for ch in text).strip(" .")
    encoded = cleaned.encode("utf-8")[:MAX_NAME_PART_BYTES]
    return encoded.decode("utf-8", "ignore").strip(" .")


def expand_pattern(pattern: str, values: PatternValues) -> str:
    """The pattern with its tags filled in and made safe as one file name part; a tag the infotext lacks (an
    upscale has no sampler) is left out. '' when nothing is left."""
    check_pattern(pattern)

    def fill(match: re.Match) -> str:
        return str(TAGS[match[1].strip().lower()](values) or "")

    return sanitize_name_part(_TAG.sub(fill, pattern))


def normalize_format(value: object) -> str:
    text = str(value).strip().lower().lstrip(".") if isinstance(value, str) else value
    text = FORMAT_ALIASES.get(text, text)
    if text not in SAMPLE_FORMATS:
        raise SaveOptionError(f"output format must be one of {', '.join(SAMPLE_FORMATS)}, got {value!r}")
    return text


def check_quality(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise SaveOptionError(f"JPEG/WebP quality must be a whole number from 1 to 100, got {value!r}")
    return value


@dataclass(frozen=True)
class SaveOptions:
    format: str = "png"  # png | jpg | webp
    quality: int = 80  # JPEG and WebP, 1-100 (AUTOMATIC1111's jpeg_quality default)
    filename_pattern: str = ""  # '' : the task's own name
    save_txt: bool = False  # the infotext also as <name>.txt beside the image

    def __post_init__(self):
        object.__setattr__(self, "format", normalize_format(self.format))
        check_quality(self.quality)
        check_pattern(self.filename_pattern)
        if not isinstance(self.save_txt, bool):
            raise SaveOptionError(f"save infotext as .txt must be true or false, got {self.save_txt!r}")
