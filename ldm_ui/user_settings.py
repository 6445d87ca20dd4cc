"""Remembered settings: the defaults a user saves in the Settings tab (or an API caller through POST
/sdapi/v1/options), in a JSON file in the app's data folder (`<cache_dir>/settings.json`), applied when the app
starts and on every page load. Saved settings win over the command line's flags for the same things.

Two kinds: the generation tabs' starting values (sampler, steps, CFG, size, clip skip), which the page puts into
the widgets, and app-wide ones the engine reads from the config (`apply`): the live preview, the clip skip of a
request that names none, and how images are saved (format, quality, filename pattern, .txt beside).

A value the file holds but the app does not allow (hand-edited, or from another version) is left out with a
message naming it; the rest still apply.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ldm_ui.config import PREVIEW_METHODS, AppConfig
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.requests import MAX_CFG, MAX_CLIP_SKIP, MAX_SIZE, MAX_STEPS, MIN_SIZE
from ldm_ui.save_options import SaveOptionError, SaveOptions, check_pattern, check_quality, normalize_format

log = logging.getLogger(__name__)

# the settings that are every generation tab's starting values (the tabs' input names; the rest are app-wide)
TAB_FIELDS = ("sampler", "steps", "cfg_scale", "width", "height", "clip_skip")


@dataclass(frozen=True)
class UserSettings:
    sampler: str = "Euler a"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int = 0  # 0: the model's native size
    height: int = 0
    preview_method: str = "auto"
    preview_every_n_steps: int = 1
    clip_skip: int = 1
    samples_format: str = "png"  # png | jpg | webp
    jpeg_quality: int = 80  # JPEG and WebP
    filename_pattern: str = ""  # '' : the task's own name after the running number
    save_txt: bool = False

    @classmethod
    def from_config(cls, config: AppConfig) -> UserSettings:
        saving = config.save_options
        return cls(preview_method=config.preview_method, preview_every_n_steps=config.preview_every_n_steps,
                   clip_skip=config.clip_skip, samples_format=saving.format, jpeg_quality=saving.quality,
                   filename_pattern=saving.filename_pattern, save_txt=saving.save_txt)

    def save_options(self) -> SaveOptions:
        return SaveOptions(format=self.samples_format, quality=self.jpeg_quality,
                           filename_pattern=self.filename_pattern, save_txt=self.save_txt)


def settings_path(config: AppConfig) -> Path:
    return config.cache_dir / "settings.json"


def _problem(name: str, value: Any) -> str | None:
    """Why `value` cannot be setting `name`, or None when it can."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if name == "sampler" and value not in SAMPLER_NAMES:
        return f"sampler {value!r} is not one of {', '.join(SAMPLER_NAMES)}"
    if name == "steps" and not (whole and 1 <= value <= MAX_STEPS):
        return f"steps must be a whole number from 1 to {MAX_STEPS}, got {value!r}"
    if name == "cfg_scale" and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                    and 0 <= value <= MAX_CFG):
        return f"CFG scale must be a number from 0 to {MAX_CFG:g}, got {value!r}"
    if name in ("width", "height") and not (whole and (value == 0 or (MIN_SIZE <= value <= MAX_SIZE
                                                                       and value % 8 == 0))):
        return f"{name} must be 0 (the model's size) or a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}, got {value!r}"
    if name == "preview_method" and value not in PREVIEW_METHODS:
        return f"preview method must be one of {', '.join(PREVIEW_METHODS)}, got {value!r}"
    if name == "preview_every_n_steps" and not (whole and 1 <= value <= MAX_STEPS):
        return f"preview every N steps must be a whole number from 1 to {MAX_STEPS}, got {value!r}"
    if name == "clip_skip" and not (whole and 1 <= value <= MAX_CLIP_SKIP):
        return f"clip skip must be a whole number from 1 to {MAX_CLIP_SKIP}, got {value!r}"
    if name == "save_txt" and not isinstance(value, bool):
        return f"save infotext as .txt must be true or false, got {value!r}"
    checks = {"samples_format": normalize_format, "jpeg_quality": check_quality, "filename_pattern": check_pattern}
    if name in checks:
        try:
            checks[name](value)
        except SaveOptionError as error:
            return str(error)
    return None


def check(settings: UserSettings) -> UserSettings:
    """`settings` with the format's spelling made canonical (jpeg -> jpg); ValueError naming a bad value."""
    for f in fields(settings):
        problem = _problem(f.name, getattr(settings, f.name))
        if problem:
            raise ValueError(problem)
    return replace(settings, samples_format=normalize_format(settings.samples_format))


def load(config: AppConfig) -> tuple[UserSettings, list[str]]:
    """The saved settings over the app's defaults, and a message per value that was left out."""
    base = UserSettings.from_config(config)
    path = settings_path(config)
    if not path.is_file():
        return base, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        return base, [f"{path} could not be read ({error}); using the defaults"]
    if not isinstance(data, dict):
        return base, [f"{path} must hold a JSON object; using the defaults"]
    known = {f.name for f in fields(UserSettings)}
    values, notes = {}, []
    for name, value in data.items():
        if name not in known:
            notes.append(f"{path.name}: unknown setting {name!r} ignored")
            continue
        if name == "cfg_scale" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        problem = _problem(name, value)
        if problem:
            notes.append(f"{path.name}: {problem}; left at its default")
        else:
            values[name] = normalize_format(value) if name == "samples_format" else value
    for note in notes:
        log.warning(note)
    return UserSettings(**{**asdict(base), **values}), notes


def apply(config: AppConfig, settings: UserSettings) -> None:
    """The app-wide settings into the config the engine reads: the live preview, the clip skip of a request that
    names none, how images are saved."""
    config.preview_method, config.preview_every_n_steps = settings.preview_method, settings.preview_every_n_steps
    config.clip_skip = settings.clip_skip
    config.save_options = settings.save_options()


def load_and_apply(config: AppConfig) -> tuple[UserSettings, list[str]]:
    """At start: the saved settings, applied to the config; the notes on values left out."""
    settings, notes = load(config)
    apply(config, settings)
    return settings, notes


_update_lock = threading.Lock()  # the Settings tab and the API may change settings at once: one at a time


def check_changes(config: AppConfig, **changes: Any) -> UserSettings:
    """The saved settings with `changes`, checked (ValueError naming the first bad value or name); nothing saved."""
    known = {f.name for f in fields(UserSettings)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
    current, _ = load(config)
    return check(replace(current, **changes))


def update(config: AppConfig, **changes: Any) -> UserSettings:
    """The saved settings with `changes` (each checked; ValueError naming the first bad one, nothing changed),
    written to the file and applied to the config."""
    with _update_lock:
        settings = check_changes(config, **changes)
        save(config, settings)
        apply(config, settings)
    return settings


def save(config: AppConfig, settings: UserSettings) -> Path:
    settings = check(settings)
    path = settings_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(asdict(settings), handle, indent=2)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
