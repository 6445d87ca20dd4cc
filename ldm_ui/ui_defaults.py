"""Per-widget UI defaults, like AUTOMATIC1111's ui-config.json: `{"txt2img/steps/value": 30, ...}`, kept in
`<cache_dir>/ui-config.json`. Keys are `<tab>/<input name>/value`, the input names being the tabs' InputTable
names (the public API's parameter names), so a key means the same widget in every version that keeps its API.

This module only reads and writes the file; which keys exist and which values each widget allows is the UI's
business (ldm_ui/ui/ui_config_panel.py), which checks every value before it is stored and again when applied.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ldm_ui.config import AppConfig

FILE_NAME = "ui-config.json"


def defaults_path(config: AppConfig) -> Path:
    return config.cache_dir / FILE_NAME


def parse(text: str | bytes, source: str) -> dict[str, Any]:
    """A ui-config JSON document -> its object; ValueError naming the source and what is wrong."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source} is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source} must hold a JSON object of \"tab/input/value\": value pairs, "
                         f"got {type(data).__name__}")
    return data


def read(config: AppConfig) -> tuple[dict[str, Any], list[str]]:
    """The stored defaults ({} when none), and a note when the file could not be used."""
    path = defaults_path(config)
    if not path.is_file():
        return {}, []
    try:
        return parse(path.read_bytes(), path.name), []
    except (OSError, ValueError) as error:
        return {}, [f"{error}; the UI defaults are not applied"]


def write(config: AppConfig, values: dict[str, Any]) -> Path:
    """Replace the stored defaults with `values` (already checked), atomically."""
    path = defaults_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ui-config-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(values, handle, indent=2, ensure_ascii=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
