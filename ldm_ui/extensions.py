"""The extension contract, and discovery of extensions/<name>/.

An extension is a folder `extensions/<name>/` with an `__init__.py` (or `extension.py`) that defines

    def register(api: ExtensionApi) -> None: ...

`api` is the only thing an extension should import from ldm-ui (`from ldm_ui.extensions import ExtensionApi`).
Through it an extension can add a tab, a prompt transform, a step hook, a ControlNet preprocessor and settings,
and submit requests to the engine. Every callable it registers is wrapped: an exception disables the extension,
is logged and shown in the Extensions tab with the extension's name, and the job goes on without it. An
`api.RequestError` raised by a transform is the user's mistake (an unknown wildcard), not the extension's: it
fails that job with the message and leaves the extension enabled.

There is no installer: extensions are folders the owner of the machine copies in, so nothing a browser sends
(--share or --listen included) can install or update code.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ldm_ui.config import AppConfig
from ldm_ui.engine.engine import Engine, Job, StepInfo
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.image_saving import save_image
from ldm_ui.metadata import build_infotext
from ldm_ui.requests import (
    MAX_CFG, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, Cancelled, Failed, Finished, Output, RequestError,
    Txt2ImgRequest,
)
from ldm_ui.safe_paths import UnsafeNameError, resolve_inside

log = logging.getLogger(__name__)

ENTRY_FILES = ("__init__.py", "extension.py")
STATE_FILE = "extensions.json"
_NAME = re.compile(r"[A-Za-z0-9][\w\-]*")


@dataclass
class Setting:
    """One setting an extension declared; read `.value` when you need it (the user may change it any time)."""

    key: str
    label: str
    default: Any
    value: Any
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    info: str = ""

    def check(self, value: Any) -> Any:
        """`value` converted to the setting's type, or RequestError naming the setting and what is allowed."""
        if self.choices is not None:
            if value not in self.choices:
                raise RequestError(f"setting {self.label!r} must be one of {', '.join(map(str, self.choices))}, "
                                   f"got {value!r}")
            return value
        kind = type(self.default)
        if kind is bool:
            if not isinstance(value, bool):
                raise RequestError(f"setting {self.label!r} must be true or false, got {value!r}")
            return value
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RequestError(f"setting {self.label!r} must be a number, got {value!r}")
            value = kind(value)
            low = self.minimum if self.minimum is not None else float("-inf")
            high = self.maximum if self.maximum is not None else float("inf")
            if not low <= value <= high:
                raise RequestError(f"setting {self.label!r} must be between {low:g} and {high:g}, got {value:g}")
            return value
        if not isinstance(value, str) or "\x00" in value:
            raise RequestError(f"setting {self.label!r} must be text, got {value!r}")
        return value


@dataclass
class ExtensionRecord:
    """What the app knows about one extension folder: its state, its error, and what it registered."""

    name: str
    folder: Path
    state: str = "found"  # found | enabled | failed | off (toggled off) | skipped (--disable-extensions)
    error: str = ""
    tabs: list[tuple[str, Callable]] = field(default_factory=list)
    settings: dict[str, Setting] = field(default_factory=dict)
    registered: list[str] = field(default_factory=list)  # a readable list: "prompt transform", "tab X", ...

    @property
    def active(self) -> bool:
        return self.state == "enabled"


class ExtensionApi:
    """The facade an extension's `register(api)` receives: everything an extension may use, typed."""

    # types and limits an extension builds requests with
    Txt2ImgRequest = Txt2ImgRequest
    RequestError = RequestError
    UnsafeNameError = UnsafeNameError
    StepInfo = StepInfo
    Job = Job
    Finished, Failed, Cancelled, Output = Finished, Failed, Cancelled, Output
    SAMPLER_NAMES = SAMPLER_NAMES
    MAX_STEPS, MAX_CFG, MIN_SIZE, MAX_SIZE, MAX_SEED = MAX_STEPS, MAX_CFG, MIN_SIZE, MAX_SIZE, MAX_SEED

    def __init__(self, manager: ExtensionManager, record: ExtensionRecord):
        self._manager, self._record = manager, record
        self.name = record.name
        self.folder = record.folder
        self.log = logging.getLogger(f"ldm_ui.extension.{record.name}")

    # ---- what an extension adds

    def add_tab(self, title: str, build: Callable[[Any], None]) -> None:
        """`build(ui)` runs inside a new tab; `ui.model` is the model dropdown, `ui.session` the session state."""
        self._record.tabs.append((str(title), build))
        self._record.registered.append(f"tab {title!r}")

    def add_prompt_transform(self, transform: Callable[[str, int], str]) -> None:
        """`transform(prompt, seed) -> prompt` runs on the worker for every image, before the prompt is encoded."""
        self._manager.engine.prompt_transforms.append(self._manager.guard_transform(self._record, transform))
        self._record.registered.append("prompt transform")

    def add_step_hook(self, hook: Callable[[StepInfo], None]) -> None:
        """`hook(info)` runs after every denoising step; `info.step`, `info.latents`; set `info.stop = True`."""
        self._manager.engine.step_hooks.append(self._manager.guard_hook(self._record, hook))
        self._record.registered.append("step hook")

    def add_controlnet_preprocessor(self, name: str, preprocess: Callable[[Any], Any]) -> None:
        """`preprocess(PIL image) -> PIL image` (an edge map, a depth map...), listed under `name`."""
        if not isinstance(name, str) or not _NAME.fullmatch(name.replace(" ", "_")):
            raise RequestError(f"ControlNet preprocessor name must be letters, digits, '-', '_' or spaces, "
                               f"got {name!r}")
        self._manager.controlnet_preprocessors[name] = self._manager.guard_preprocessor(self._record, name,
                                                                                        preprocess)
        self._record.registered.append(f"ControlNet preprocessor {name!r}")

    def add_setting(self, key: str, label: str, default: Any, *, choices: list | tuple | None = None,
                    minimum: float | None = None, maximum: float | None = None, info: str = "") -> Setting:
        """A setting shown in the Extensions tab and kept across restarts; read the returned `.value`."""
        if not isinstance(default, (bool, int, float, str)):
            raise RequestError(f"setting {key!r}: the default must be a bool, number or text, got {default!r}")
        setting = Setting(key, label, default, default, tuple(choices) if choices is not None else None,
                          minimum, maximum, info)
        saved = self._manager.saved_settings(self.name).get(key)
        if saved is not None:
            try:
                setting.value = setting.check(saved)
            except RequestError as error:
                self.log.warning("ignoring the saved value of %s: %s", key, error)
        self._record.settings[key] = setting
        return setting

    # ---- what an extension may call

    def submit(self, request) -> Job:
        """Queue a request on the engine (the same queue the tabs use) and get its Job (events, cancel, wait)."""
        return self._manager.engine.submit(request)

    def generate(self, request, timeout: float | None = None) -> Finished:
        return self._manager.engine.generate(request, timeout)

    def resolve_inside(self, folder: Path, name: str, suffixes: tuple[str, ...], kind: str) -> Path:
        """The file `name` names inside `folder`; `..`, absolute paths, NUL and escaping links are refused."""
        return resolve_inside(folder, name, suffixes, kind=kind)

    def save_image(self, image, subfolder: str, prompt: str, negative_prompt: str, settings: dict) -> Path:
        """Save the image with an infotext under outputs/<subfolder>/, never overwriting another image, in the
        app's output format (PNG unless the Settings say JPEG or WebP) and filename pattern."""
        if not _NAME.fullmatch(subfolder):
            raise RequestError(f"output subfolder must be letters, digits, '-' or '_', got {subfolder!r}")
        infotext = build_infotext(prompt, negative_prompt, settings)
        config = self._manager.config
        return save_image(image, config.outputs_dir / subfolder, self.name, infotext, config.save_options)


class ExtensionManager:
    """Finds, loads and guards the extensions of one app; the Extensions tab reads and toggles it."""

    def __init__(self, config: AppConfig, engine: Engine):
        self.config, self.engine = config, engine
        self.records: dict[str, ExtensionRecord] = {}
        self.controlnet_preprocessors: dict[str, Callable] = engine.controlnet_preprocessors
        self._state = self._read_state()

    # ---- persisted toggles and settings

    @property
    def state_path(self) -> Path:
        return self.config.cache_dir / STATE_FILE

    def _read_state(self) -> dict:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"disabled": [], "settings": {}}
        except (OSError, ValueError) as error:
            log.warning("ignoring %s: %s", self.state_path, error)
            return {"disabled": [], "settings": {}}
        if not isinstance(data, dict):
            return {"disabled": [], "settings": {}}
        disabled = [n for n in data.get("disabled", []) if isinstance(n, str)]
        settings = {k: v for k, v in data.get("settings", {}).items() if isinstance(v, dict)}
        return {"disabled": disabled, "settings": settings}

    def _write_state(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, indent=2), encoding="utf-8")
        tmp.replace(self.state_path)

    def saved_settings(self, name: str) -> dict:
        return self._state["settings"].get(name, {})

    def set_setting(self, name: str, key: str, value: Any) -> Any:
        setting = self.records[name].settings[key]
        setting.value = setting.check(value)
        self._state["settings"].setdefault(name, {})[key] = setting.value
        self._write_state()
        return setting.value

    def set_enabled(self, name: str, enabled: bool) -> str:
        """Toggle an extension; returns what happens now (hooks stop at once; tabs change on restart)."""
        record = self.records[name]
        disabled = set(self._state["disabled"])
        (disabled.discard if enabled else disabled.add)(name)
        self._state["disabled"] = sorted(disabled)
        self._write_state()
        if not enabled:
            if record.state in ("enabled", "failed"):
                record.state = "off"
            log.info("extension %s turned off", name)
            return f"{name} is off: its hooks stopped now; its tabs go away after a restart."
        if record.state == "off" and record.registered:
            record.state, record.error = "enabled", ""
            return f"{name} is on again."
        return f"{name} will be loaded at the next start of the app."

    # ---- discovery and loading

    def discover(self) -> list[ExtensionRecord]:
        folder = self.config.extensions_dir
        found = []
        if folder.is_dir():
            for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
                if path.is_dir() and _NAME.fullmatch(path.name) and any((path / f).is_file() for f in ENTRY_FILES):
                    found.append(ExtensionRecord(path.name, path))
        return found

    def load_all(self) -> ExtensionManager:
        for record in self.discover():
            self.records[record.name] = record
            if self.config.disable_extensions:
                record.state = "skipped"
            elif record.name in self._state["disabled"]:
                record.state = "off"
            else:
                self._load(record)
        loaded = [r.name for r in self.records.values() if r.active]
        if loaded:
            log.info("extensions loaded: %s", ", ".join(loaded))
        return self

    def _load(self, record: ExtensionRecord) -> None:
        entry = next(record.folder / f for f in ENTRY_FILES if (record.folder / f).is_file())
        module_name = f"ldm_ui_extension_{record.name.replace('-', '_')}"
        try:
            spec = importlib.util.spec_from_file_location(
                module_name, entry,
                submodule_search_locations=[str(record.folder)] if entry.name == "__init__.py" else None)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # so the extension's own relative imports resolve
            spec.loader.exec_module(module)
            register = getattr(module, "register", None)
            if not callable(register):
                raise TypeError(f"{entry.name} defines no register(api) function")
            record.state = "enabled"
            register(ExtensionApi(self, record))
        except Exception as error:  # noqa: BLE001 - a broken extension must not stop the app
            sys.modules.pop(module_name, None)
            self.fail(record, "loading", error)

    def fail(self, record: ExtensionRecord, where: str, error: BaseException) -> None:
        record.state = "failed"
        record.error = f"{where}: {type(error).__name__}: {error}"
        log.error("extension %s disabled after an error while %s:\n%s", record.name, where,
                  "".join(traceback.format_exception(error)))

    # ---- guards around what extensions register

    def guard_transform(self, record: ExtensionRecord, transform: Callable[[str, int], str]):
        def guarded(prompt: str, seed: int) -> str:
            if not record.active:
                return prompt
            try:
                result = transform(prompt, seed)
            except RequestError:
                raise  # the user's input was wrong (an unknown wildcard): fail this job, keep the extension
            except Exception as error:  # noqa: BLE001
                self.fail(record, "transforming a prompt", error)
                return prompt
            if not isinstance(result, str):
                self.fail(record, "transforming a prompt", TypeError(f"returned {type(result).__name__}, not text"))
                return prompt
            return result

        return guarded

    def guard_hook(self, record: ExtensionRecord, hook: Callable[[StepInfo], None]):
        def guarded(info: StepInfo) -> None:
            if not record.active:
                return
            try:
                hook(info)
            except Exception as error:  # noqa: BLE001
                self.fail(record, f"its step hook at step {info.step + 1}", error)

        return guarded

    def guard_preprocessor(self, record: ExtensionRecord, name: str, preprocess: Callable):
        def guarded(image):
            if not record.active:
                raise RequestError(f"ControlNet preprocessor {name!r} belongs to extension {record.name}, "
                                   "which is turned off or failed")
            try:
                return preprocess(image)
            except RequestError:
                raise
            except Exception as error:  # noqa: BLE001
                self.fail(record, f"ControlNet preprocessor {name!r}", error)
                raise RequestError(f"ControlNet preprocessor {name!r} (extension {record.name}) failed: "
                                   f"{type(error).__name__}: {error}") from None

        return guarded

    def guard_tab(self, record: ExtensionRecord, build: Callable):
        def guarded(ui) -> None:
            try:
                build(ui)
            except Exception as error:  # noqa: BLE001
                self.fail(record, "building its tab", error)
                import gradio as gr

                gr.Markdown(f"⚠️ Extension **{record.name}** failed while building this tab: {record.error}")

        return guarded

    def tabs(self) -> list[tuple[str, Callable]]:
        """(title, build) of every enabled extension's tabs, in the order extensions were loaded."""
        return [(title, self.guard_tab(record, build))
                for record in self.records.values() if record.active for title, build in record.tabs]

    def failures(self) -> list[ExtensionRecord]:
        return [r for r in self.records.values() if r.state == "failed"]
