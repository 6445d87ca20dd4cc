"""The AUTOMATIC1111 `parameters` infotext: build it from settings, parse it back, read it from an image
(writing images with it: ldm_ui/image_saving.py).

Format (the one the whole ecosystem reads):

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, Model hash: 0123456789, Model: name

Values that contain a comma, colon or quote are written as JSON strings.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ldm_ui.requests import MAX_SEED, MIN_REFINER_SWITCH, HiresFix, RequestError

NEGATIVE_PREFIX = "Negative prompt:"
# one `Key: value` pair of the settings line; a value is a JSON string or runs to the next comma
_PAIR = re.compile(r'\s*([A-Za-z][\w \-/().]*?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def quote(value: Any) -> str:
    text = str(value)
    if any(c in text for c in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def build_infotext(prompt: str, negative_prompt: str, settings: dict[str, Any]) -> str:
    """settings: ordered `Key -> value`; None values are left out."""
    line = ", ".join(f"{k}: {quote(v)}" for k, v in settings.items() if v is not None and v != "")
    parts = [prompt]
    if negative_prompt:
        parts.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    parts.append(line)
    return "\n".join(parts)


@dataclass
class Infotext:
    prompt: str = ""
    negative_prompt: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    def get_int(self, key: str, default: int | None = None) -> int | None:
        try:
            return int(self.settings[key])
        except (KeyError, ValueError):
            return default

    def get_float(self, key: str, default: float | None = None) -> float | None:
        try:
            return float(self.settings[key])
        except (KeyError, ValueError):
            return default

    def size(self) -> tuple[int, int] | None:
        match = re.fullmatch(r"(\d+)x(\d+)", self.settings.get("Size", ""))
        return (int(match[1]), int(match[2])) if match else None


_KEYLESS = re.compile(r'\s*(?:"(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')  # a value with no key before it, up to its comma
_TRAILING_KEY = re.compile(r"([A-Za-z][\w \-/().]*?):\s?(.*)")


def parse_settings_line(line: str) -> dict[str, str]:
    """`Key: value` pairs; a value without a key (civitai writes some that way) is skipped, not the end."""
    settings: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _PAIR.match(line, pos)
        if not match or match.end() == pos:
            skipped = _KEYLESS.match(line, pos)
            if not skipped or skipped.end() == pos:
                break
            pos = skipped.end()
            continue
        settings[match[1].strip()] = unquote(match[2])
        pos = match.end()
    return settings


def _is_settings_line(line: str) -> bool:
    return len(parse_settings_line(line)) >= 3 and re.match(r"\s*[A-Za-z][\w \-/().]*?:", line) is not None


def _split_settings(lines: list[str]) -> dict[str, str]:
    """Pop the settings line and any `Key: value` lines after it (Dynamic Prompts adds `Template: ...`) off `lines`."""
    found = next((i for i in range(len(lines) - 1, -1, -1) if _is_settings_line(lines[i])), None)
    after = lines[found + 1:] if found is not None else []
    if found is None or (after and not _TRAILING_KEY.fullmatch(after[0])):  # prompt text follows: not settings
        return {}
    settings = parse_settings_line(lines[found])
    key = None
    for line in lines[found + 1:]:
        match = _TRAILING_KEY.fullmatch(line)
        if match:
            key = match[1].strip()
            settings[key] = match[2]
        elif key is not None:  # a template that runs over several lines
            settings[key] += "\n" + line
    del lines[found:]
    return settings


def parse_infotext(text: str) -> Infotext:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    settings = _split_settings(lines)
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in lines:
        if not in_negative and line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    return Infotext("\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), settings)


def read_png_parameters(image: Image.Image) -> str | None:
    info = getattr(image, "text", None) or image.info
    value = info.get("parameters") if info else None
    return value if isinstance(value, str) else None


def read_infotext(image: Image.Image) -> str | None:
    """The infotext of a PNG (its `parameters` chunk) or of a JPEG/WebP (EXIF UserComment), as AUTOMATIC1111
    writes them; None when the image has none. Text chunks after the pixel data need `image.load()` first."""
    return read_png_parameters(image) or exif_user_comment(image)


HIRES_KEYS = ("Hires upscale", "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler", "Hires prompt",
              "Hires negative prompt", "Denoising strength")
# settings that map onto a generation tab's widgets; everything else in an infotext is shown, not applied
WIDGET_KEYS = ("Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Clip skip", *HIRES_KEYS,
               "Variation seed", "Variation seed strength", "Seed resize from", "Refiner", "Refiner switch at")


def sampler_from_infotext(settings: dict[str, str]) -> str | None:
    """Our sampler name for an infotext's `Sampler` (+ A1111 1.6's separate `Schedule type`), or None."""
    from ldm_ui.engine.samplers import SAMPLER_NAMES

    name = settings.get("Sampler", "").strip()
    schedule = settings.get("Schedule type", "").strip()
    candidates = [f"{name} {schedule}"] if schedule and schedule.lower() not in ("automatic", "uniform") else []
    candidates.append(name)
    return next((c for c in candidates if c in SAMPLER_NAMES), None)


def generation_fields(info: Infotext) -> tuple[dict[str, Any], list[str]]:
    """Request field values that `info` names, and notes on the settings that could not be used.

    Keys: prompt, negative_prompt, sampler, steps, cfg_scale, seed, width, height, model, clip_skip, hires (each only
    when present and readable; an infotext without `Clip skip` means 1, as AUTOMATIC1111 omits it at 1; hires is a
    HiresFix when the infotext has a `Hires upscaler`).
    """
    fields: dict[str, Any] = {"prompt": info.prompt, "negative_prompt": info.negative_prompt}
    notes: list[str] = []
    settings = info.settings
    if "Sampler" in settings:
        sampler = sampler_from_infotext(settings)
        if sampler:
            fields["sampler"] = sampler
        else:
            schedule = f" with schedule {settings['Schedule type']}" if settings.get("Schedule type") else ""
            notes.append(f"sampler {settings['Sampler']!r}{schedule} has no equivalent here; the sampler is unchanged")
    for key, name, read in (("Steps", "steps", info.get_int), ("CFG scale", "cfg_scale", info.get_float),
                            ("Seed", "seed", info.get_int)):
        if key in settings:
            value = read(key)
            if value is None:
                notes.append(f"{key} {settings[key]!r} is not a number; left unchanged")
            else:
                fields[name] = value
    seed = fields.get("seed")
    if seed is not None and not -1 <= seed <= MAX_SEED:
        fields["seed"] = seed % (MAX_SEED + 1)
        notes.append(f"Seed {seed} is outside 0-{MAX_SEED} (a 64-bit seed from another tool); using {fields['seed']} "
                     f"(the seed modulo 2^32), so the image will differ")
    if "Size" in settings:
        size = info.size()
        if size:
            fields["width"], fields["height"] = size
        else:
            notes.append(f"Size {settings['Size']!r} is not WIDTHxHEIGHT; left unchanged")
    if settings.get("Model"):
        fields["model"] = settings["Model"]
    clip_skip = info.get_int("Clip skip", 1)
    if clip_skip is not None and 1 <= clip_skip <= 12:
        fields["clip_skip"] = clip_skip
    else:
        notes.append(f"Clip skip {settings['Clip skip']!r} is not a whole number from 1 to 12; left unchanged")
    if "Hires upscaler" in settings:
        hires, note = hires_from_infotext(info)
        if hires is not None:
            fields["hires"] = hires
        else:
            notes.append(note)
    variation_fields(info, fields, notes)
    refiner_fields(info, fields, notes)
    return fields, notes


def refiner_fields(info: Infotext, fields: dict[str, Any], notes: list[str]) -> None:
    """`Refiner: <name> [<hash>]` and `Refiner switch at` (AUTOMATIC1111's keys) into `fields` as
    refiner_checkpoint (the name, without the hash) and refiner_switch_at."""
    name = re.sub(r"\s*\[[0-9a-fA-F]+\]$", "", info.settings.get("Refiner", "").strip())
    if not name:
        return
    fields["refiner_checkpoint"] = name
    if "Refiner switch at" in info.settings:
        switch = info.get_float("Refiner switch at")
        if switch is None or not MIN_REFINER_SWITCH <= switch <= 1.0:
            notes.append(f"Refiner switch at {info.settings['Refiner switch at']!r} is not a number from "
                         f"{MIN_REFINER_SWITCH:g} to 1; left unchanged")
        else:
            fields["refiner_switch_at"] = switch


def variation_fields(info: Infotext, fields: dict[str, Any], notes: list[str]) -> None:
    """`Variation seed`, `Variation seed strength` and `Seed resize from` (AUTOMATIC1111's keys) into `fields`."""
    for key, name, read in (("Variation seed", "variation_seed", info.get_int),
                            ("Variation seed strength", "variation_strength", info.get_float)):
        if key in info.settings:
            value = read(key)
            if value is None:
                notes.append(f"{key} {info.settings[key]!r} is not a number; left unchanged")
            else:
                fields[name] = value
    if "Seed resize from" in info.settings:
        match = re.fullmatch(r"(\d+)x(\d+)", info.settings["Seed resize from"].strip())
        if match:
            fields["resize_from_width"], fields["resize_from_height"] = int(match[1]), int(match[2])
        else:
            notes.append(f"Seed resize from {info.settings['Seed resize from']!r} is not WIDTHxHEIGHT; "
                         "left unchanged")


def hires_from_infotext(info: Infotext) -> tuple[HiresFix | None, str]:
    """The hires fix an A1111 txt2img infotext describes (absent keys take A1111's meaning), or None and why."""
    settings = info.settings
    try:
        values: dict[str, Any] = {"upscaler": settings["Hires upscaler"]}
        if "Hires upscale" in settings:
            values["scale"] = float(settings["Hires upscale"])
        resize = re.fullmatch(r"(\d+)x(\d+)", settings.get("Hires resize", ""))
        if resize:
            values["resize_width"], values["resize_height"] = int(resize[1]), int(resize[2])
        if "Hires steps" in settings:
            values["steps"] = int(settings["Hires steps"])
        if "Denoising strength" in settings:
            values["denoising_strength"] = float(settings["Denoising strength"])
        if "Hires sampler" in settings:
            values["sampler"] = sampler_from_infotext({"Sampler": settings["Hires sampler"],
                                                        "Schedule type": settings.get("Hires schedule type", "")})
        values["prompt"] = settings.get("Hires prompt", "")
        values["negative_prompt"] = settings.get("Hires negative prompt", "")
        return HiresFix(**values), ""
    except (ValueError, RequestError) as error:
        return None, f"the hires fix settings could not be used ({error}); hires fix left unchanged"


EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


def exif_user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment, where A1111 puts the parameters of the JPEG and WebP files it saves."""
    raw = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes):
        return None
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":  # the EXIF spec leaves the byte order open; writers use big-endian (piexif)
        text = max((body.decode(order, "replace") for order in ("utf-16-be", "utf-16-le")), key=_ascii_count)
    elif prefix.startswith(b"ASCII"):
        text = body.decode("ascii", "replace")
    else:
        text = raw.decode("utf-8", "replace")
    return text.rstrip("\0") or None


def _ascii_count(text: str) -> int:
    """ASCII characters in a decoding: the right byte order turns 'Steps: 20' into ASCII, the wrong one into CJK."""
    return sum(ch.isascii() for ch in text)
