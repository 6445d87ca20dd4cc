"""Presets: small readable JSON files in presets/ that hold a tab's defaults.

A preset file looks like this (every key is optional):

    {
      "description": "Stable Diffusion 1.5 at its native 512 px",
      "model": "v1-5-pruned-emaonly.safetensors",
      "sampler": "DPM++ 2M Karras", "steps": 25, "cfg_scale": 7,
      "width": 512, "height": 512,
      "negative_prompt": "blurry, lowres",
      "loras": [{"name": "add_detail", "weight": 0.6}],
      "style": "{prompt}, detailed illustration",
      "preview_method": "approx"
    }

Values are checked with the same limits a request is checked with, so a preset can never hold a value that
Generate would refuse. Nothing here imports Gradio or torch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ldm_ui.config import PREVIEW_METHODS
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.requests import MAX_CFG, MAX_PROMPT_CHARS, MAX_SIZE, MAX_STEPS, MIN_SIZE, RequestError
from ldm_ui.safe_paths import check_name, is_inside

log = logging.getLogger(__name__)

PRESET_SUFFIX = ".json"
USERS_FOLDER = "users"  # presets/users/<login>/: what each signed-in user saved
MAX_PRESET_NAME_CHARS = 64
MAX_PRESET_FILE_BYTES = 64 * 1024
MAX_LORA_WEIGHT = 5.0  # A1111 accepts any number; beyond +-5 a LoRA only produces noise
MAX_LORAS = 16
STYLE_SLOT = "{prompt}"
# a LoRA name as it appears in a <lora:name:weight> tag: no colon, angle bracket, NUL or path climbing
_LORA_NAME = re.compile(r"[^:<>\x00-\x1f]+")
# a preset name is a file stem: letters, digits, space, dot, dash, underscore, plus (no path separators)
_PRESET_NAME = re.compile(r"[\w][\w .+\-]*")

KEYS: dict[str, str] = {
    "description": "text shown when the preset is applied",
    "model": "a model name from the model list (or a hub id)",
    "sampler": f"one of: {', '.join(SAMPLER_NAMES)}",
    "steps": f"a whole number between 1 and {MAX_STEPS}",
    "cfg_scale": f"a number between 0 and {MAX_CFG:g}",
    "width": f"a multiple of 8 between {MIN_SIZE} and {MAX_SIZE}",
    "height": f"a multiple of 8 between {MIN_SIZE} and {MAX_SIZE}",
    "negative_prompt": f"text of at most {MAX_PROMPT_CHARS:,} characters",
    "loras": f'a list of {{"name": text, "weight": number between -{MAX_LORA_WEIGHT:g} and {MAX_LORA_WEIGHT:g}}}',
    "style": f"text containing {STYLE_SLOT} where the user's prompt goes",
    "preview_method": f"one of: {', '.join(PREVIEW_METHODS)}",
}


class PresetError(RequestError):
    """A preset file or name the app refuses; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class LoraRef:
    name: str
    weight: float = 1.0

    def tag(self) -> str:
        return f"<lora:{self.name}:{self.weight:g}>"


@dataclass(frozen=True)
class Preset:
    name: str
    description: str = ""
    model: str | None = None
    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    negative_prompt: str | None = None
    loras: tuple[LoraRef, ...] = ()
    style: str | None = None
    preview_method: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The file content: only the keys this preset sets, in the documented order."""
        data: dict[str, Any] = {}
        for key in KEYS:
            value = getattr(self, key)
            if key == "loras":
                if value:
                    data[key] = [{"name": lora.name, "weight": lora.weight} for lora in value]
            elif value not in (None, ""):
                data[key] = value
        return data

    def prompt_for(self, prompt: str) -> str:
        """The user's prompt with this preset's style wrapped around it and its LoRA tags appended (once)."""
        return add_lora_tags(apply_style(self.style, prompt), self.loras)

    def prompt_without(self, prompt: str) -> str:
        """Undo `prompt_for`: take out this preset's LoRA tags and unwrap its style, so switching presets does not
        leave the previous one's LoRAs behind."""
        for lora in self.loras:
            prompt = re.sub(r"\s*<lora:" + re.escape(lora.name) + r"(?::[^>]*)?>", "", prompt)
        if self.style:
            before, _, after = self.style.partition(STYLE_SLOT)
            if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
                prompt = prompt[len(before): len(prompt) - len(after)]
        return prompt.strip()


def apply_style(style: str | None, prompt: str) -> str:
    """Put `prompt` where the style says {prompt}; applying the same style twice changes nothing."""
    prompt = prompt or ""
    if not style or not prompt.strip():  # nothing to wrap yet (the UI says so)
        return prompt
    before, _, after = style.partition(STYLE_SLOT)
    if (before or after) and prompt.startswith(before) and prompt.endswith(after) \
            and len(prompt) >= len(before) + len(after):
        return prompt
    return f"{before}{prompt}{after}"


def add_lora_tags(prompt: str, loras: tuple[LoraRef, ...] | list[LoraRef]) -> str:
    """Append a <lora:name:weight> tag for each LoRA; a tag for the same LoRA already in the prompt is replaced."""
    for lora in loras:
        pattern = re.compile(r"<lora:" + re.escape(lora.name) + r"(?::[^>]*)?>")
        if pattern.search(prompt):
            prompt = pattern.sub(lambda _: lora.tag(), prompt, count=1)
        else:
            prompt = f"{prompt} {lora.tag()}".strip() if prompt.strip() else lora.tag()
    return prompt


# ---- validation


def _fail(source: str, key: str, got: Any) -> PresetError:
    return PresetError(f"preset {source}: {key!r} must be {KEYS[key]}, got {got!r}")


def _whole(source: str, key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(source, key, value)
    return value


def _number(source: str, key: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise _fail(source, key, value)
    return float(value)


def _text(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS or "\x00" in value:
        raise _fail(source, key, value if isinstance(value, str) and len(value) < 80 else type(value).__name__)
    return value


def _size(source: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value % 8 or not MIN_SIZE <= value <= MAX_SIZE:
        raise _fail(source, key, value)
    return value


def _loras(source: str, value: Any) -> tuple[LoraRef, ...]:
    if not isinstance(value, list) or len(value) > MAX_LORAS:
        raise _fail(source, "loras", value)
    loras = []
    for item in value:
        if not isinstance(item, dict) or set(item) - {"name", "weight"} or "name" not in item:
            raise _fail(source, "loras", item)
        name, weight = item["name"], item.get("weight", 1.0)
        if not isinstance(name, str) or not _LORA_NAME.fullmatch(name) or ".." in name or name.startswith("/"):
            raise PresetError(f"preset {source}: LoRA name {name!r} is not allowed; a name has no ':', '<', '>', "
                              "'..', leading '/' or control characters")
        loras.append(LoraRef(name, _number(source, "loras", weight, -MAX_LORA_WEIGHT, MAX_LORA_WEIGHT)))
    return tuple(loras)


def preset_from_json(name: str, data: Any, source: str | None = None) -> Preset:
    """Check every key and value of a parsed preset file; the first problem raises PresetError."""
    source = source or f"{name}{PRESET_SUFFIX}"
    if not isinstance(data, dict):
        raise PresetError(f"preset {source}: the file must hold a JSON object {{...}}, got {type(data).__name__}")
    unknown = [key for key in data if key not in KEYS]
    if unknown:
        raise PresetError(f"preset {source}: unknown key {unknown[0]!r}; allowed keys: {', '.join(KEYS)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("description", "negative_prompt"):
            values[key] = _text(source, key, value)
        elif key == "model":
            if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 255:
                raise _fail(source, key, value)
            values[key] = value.strip()
        elif key == "sampler":
            if value not in SAMPLER_NAMES:
                raise _fail(source, key, value)
            values[key] = value
        elif key == "steps":
            values[key] = _whole(source, key, value, 1, MAX_STEPS)
        elif key == "cfg_scale":
            values[key] = _number(source, key, value, 0.0, MAX_CFG)
        elif key in ("width", "height"):
            values[key] = _size(source, key, value)
        elif key == "loras":
            values[key] = _loras(source, value)
        elif key == "style":
            if _text(source, key, value).count(STYLE_SLOT) != 1:
                raise _fail(source, key, value)
            values[key] = value
        elif key == "preview_method":
            if value not in PREVIEW_METHODS:
                raise _fail(source, key, value)
            values[key] = value
    return Preset(name=name, **values)


def check_preset_name(name: Any) -> str:
    """A name that is safe as a file stem in presets/: no path separators, NUL, '..' or leading dot."""
    if not isinstance(name, str) or not name.strip():
        raise PresetError("preset name must not be empty")
    name = name.strip()
    if name.lower().endswith(PRESET_SUFFIX):
        name = name[: -len(PRESET_SUFFIX)]
    if "\x00" in name or "/" in name or "\\" in name or ".." in name or len(name) > MAX_PRESET_NAME_CHARS \
            or not _PRESET_NAME.fullmatch(name):
        raise PresetError(
            f"preset name {name!r} is not allowed; use up to {MAX_PRESET_NAME_CHARS} letters, digits, spaces, "
            "'.', '-', '_' or '+', starting with a letter or digit (no '/', '\\', '..' or NUL)"
        )
    return name


# ---- the folder


@dataclass
class PresetLibrary:
    """The presets of one folder; `errors` holds one message per file that was refused."""

    folder: Path
    presets: dict[str, Preset] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> PresetLibrary:
        library = cls(Path(folder))
        library.reload()
        return library

    def reload(self) -> None:
        self.presets, self.errors = {}, []
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob(f"*{PRESET_SUFFIX}"), key=lambda p: p.name.lower()):
            if not is_inside(path, self.folder):  # a link out of the presets folder is not read
                continue
            try:
                self.presets[path.stem] = read_preset(path)
            except PresetError as error:
                self.errors.append(str(error))
                log.warning("%s", error)

    def names(self, user: str | None = None) -> list[str]:
        """The shared presets, then `user`'s own (presets/users/<user>/) that do not share a name with one."""
        own = [n for n in self._user_names(user) if n not in self.presets]
        return list(self.presets) + own

    def get(self, name: str, user: str | None = None) -> Preset:
        if name in self.presets:
            return self.presets[name]
        if user is not None and name in self._user_names(user):
            return read_preset(self.user_folder(user) / f"{name}{PRESET_SUFFIX}")
        known = ", ".join(self.names(user)) or "none"
        raise PresetError(f"unknown preset {name!r}; known presets: {known}")

    def user_folder(self, user: str) -> Path:
        if "/" in user or "\\" in user:
            raise PresetError(f"login name {user!r} cannot name a presets folder (it contains a slash)")
        return self.folder / USERS_FOLDER / check_name(user, "user")

    def _user_names(self, user: str | None) -> list[str]:
        if user is None:
            return []
        folder = self.user_folder(user)
        if not folder.is_dir():
            return []
        return sorted((p.stem for p in folder.glob(f"*{PRESET_SUFFIX}") if is_inside(p, folder)), key=str.lower)

    def save(self, preset: Preset, overwrite: bool = False, user: str | None = None) -> Path:
        """Write presets/<name>.json, or presets/users/<user>/<name>.json for a signed-in user; an existing file
        is replaced only with overwrite=True, and a user never replaces a shared (shipped) preset."""
        name = check_preset_name(preset.name)
        folder = self.folder
        if user is not None:
            if name in self.presets:
                raise PresetError(f"preset {name!r} is a shared preset of this app and cannot be replaced; "
                                  "save yours under another name")
            folder = self.user_folder(user)
        path = folder / f"{name}{PRESET_SUFFIX}"
        if path.exists() and not overwrite:
            raise PresetError(f"preset {name!r} already exists ({path.name}); confirm overwriting to replace it")
        if path.is_symlink():
            raise PresetError(f"preset {path.name} is a link; replace it by hand if you mean to")
        folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps(preset.to_json(), indent=2, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=".saving-", suffix=PRESET_SUFFIX, dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.reload()
        return path


def read_preset(path: Path) -> Preset:
    source = path.name
    try:
        if path.stat().st_size > MAX_PRESET_FILE_BYTES:
            raise PresetError(f"preset {source}: the file is larger than {MAX_PRESET_FILE_BYTES // 1024} KB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise PresetError(f"preset {source}: cannot read the file ({error})") from None
    except json.JSONDecodeError as error:
        raise PresetError(f"preset {source}: not valid JSON ({error.msg} at line {error.lineno}, "
                          f"column {error.colno})") from None
    return preset_from_json(path.stem, data, source)


def preset_from_settings(name: str, settings: dict[str, Any], description: str = "") -> Preset:
    """A preset from widget values (the request field names); LoRA tags are taken out of the prompt."""
    loras = tuple(LoraRef(m[1], float(m[2]) if m[2] else 1.0)
                  for m in re.finditer(r"<lora:([^:<>]+)(?::(-?[\d.]+))?>", settings.get("prompt") or ""))
    data: dict[str, Any] = {key: settings[key] for key in KEYS if settings.get(key) not in (None, "")
                            and key not in ("loras", "description")}
    if description:
        data["description"] = description
    if loras:
        data["loras"] = [{"name": lora.name, "weight": lora.weight} for lora in loras]
    if isinstance(data.get("cfg_scale"), int):
        data["cfg_scale"] = float(data["cfg_scale"])
    return preset_from_json(check_preset_name(name), data, f"{name}{PRESET_SUFFIX}")


def startup_model(config, models) -> str:
    """The model to load first: --preset's model when it is installed, else --model. Unknown --preset raises."""
    if not config.preset:
        return config.default_model
    preset = PresetLibrary.load(config.presets_dir).get(config.preset)
    if preset.model and preset.model != config.default_model:
        if preset.model in models.model_names():
            log.info("preset %s: starting with its model %s", preset.name, preset.model)
            return preset.model
        log.warning("preset %s names model %s, which is not installed; starting with %s", preset.name,
                    preset.model, config.default_model)
    return config.default_model
