"""Export and import the tabs' widget defaults, like AUTOMATIC1111's ui-config.json.

Every generation tab (and Extras) declares its inputs once as an InputTable; each value widget in it (sliders,
numbers, dropdowns, radios, checkboxes, text boxes: not images, files or the shared model/preview widgets) has a
key `<tab>/<input name>/value`. Export makes a file (a download link) of the defaults a freshly loaded page starts from: the widget's
built value, under the Settings tab's saved defaults (sampler, steps, CFG, size, clip skip), under the imported
UI defaults. Import checks every key and value against the widget it names (unknown keys and values the widget
does not allow are listed in the status, the rest apply), puts the imported values into the page at once, and
keeps those that differ from the Settings tab's defaults in `<cache_dir>/ui-config.json`, applied on every page
load. Saving the Settings tab later replaces the imported defaults of the widgets it sets: the last word counts.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from ldm_ui import ui_defaults
from ldm_ui.access import is_admin, not_admin_message
from ldm_ui.user_settings import TAB_FIELDS, UserSettings

SHARED_INPUTS = ("model", "preview_method", "preview_every", "session")  # the Settings tab and header own these
VALUE_WIDGETS = (gr.Slider, gr.Number, gr.Dropdown, gr.Radio, gr.Checkbox, gr.CheckboxGroup, gr.Textbox)
MAX_TEXT_CHARS = 20_000
MAX_IMPORT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Entry:
    component: Any
    built: Any  # the value the widget was built with


def catalog(ui) -> dict[str, Entry]:
    """key -> widget, for every value widget of every tab's InputTable, in the tabs' order."""
    entries: dict[str, Entry] = {}
    seen: set[int] = set()
    for tab, table in ui.input_tables.items():
        for row in table.inputs:
            widget = row.component
            if (row.name in SHARED_INPUTS or not isinstance(widget, VALUE_WIDGETS) or id(widget) in seen
                    or callable(widget.value)):
                continue
            seen.add(id(widget))
            entries[f"{tab}/{row.name}/value"] = Entry(widget, widget.value)
    return entries


def _choices(widget) -> list:
    return [choice[1] if isinstance(choice, (tuple, list)) else choice for choice in (widget.choices or [])]


def _number_problem(key: str, widget, value) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{key}: must be a number, got {value!r}"
    low, high = widget.minimum, widget.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        return f"{key}: must be from {'-∞' if low is None else f'{low:g}'} to {'∞' if high is None else f'{high:g}'}, " \
               f"got {value!r}"
    step = getattr(widget, "step", None) if isinstance(widget, gr.Slider) else (1 if widget.precision == 0 else None)
    if step:
        offset = (value - (low or 0)) / step
        if abs(offset - round(offset)) > 1e-6:
            if step == 1 and float(low or 0).is_integer():
                return f"{key}: must be a whole number, got {value!r}"
            return f"{key}: must be a multiple of {step:g} from {low or 0:g}, got {value!r}"
    return None


def problem(key: str, entry: Entry, value: Any) -> str | None:
    """Why `value` cannot be the default of the widget `key` names, or None."""
    widget = entry.component
    if value is None and entry.built is None:  # a widget that starts empty (a folder picker before a choice)
        return None
    if isinstance(widget, gr.Checkbox):
        return None if isinstance(value, bool) else f"{key}: must be true or false, got {value!r}"
    if isinstance(widget, (gr.Slider, gr.Number)):
        return _number_problem(key, widget, value)
    if isinstance(widget, gr.CheckboxGroup) or (isinstance(widget, gr.Dropdown) and widget.multiselect):
        if not isinstance(value, list) or any(v not in _choices(widget) for v in value):
            return f"{key}: must be a list of {', '.join(map(repr, _choices(widget)))}, got {value!r}"
        return None
    if isinstance(widget, (gr.Dropdown, gr.Radio)):
        # a sampler box takes typed names (so that a misfit one reaches the engine's message), but a saved default
        # must be a sampler ldm-ui has
        custom = (isinstance(widget, gr.Dropdown) and widget.allow_custom_value and isinstance(value, str)
                  and key.split("/")[1:2] != ["sampler"])
        if value not in _choices(widget) and not custom:
            return f"{key}: must be one of {', '.join(map(repr, _choices(widget)))}, got {value!r}"
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        return f"{key}: must be text of at most {MAX_TEXT_CHARS} characters, got {value!r:.60}"
    return None


def checked(ui, values: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The entries of `values` the widgets allow, and a note per unknown key or bad value."""
    entries = catalog(ui)
    good, notes = {}, []
    for key, value in values.items():
        if key not in entries:
            notes.append(f"{key}: no such widget (keys look like txt2img/steps/value)")
            continue
        why = problem(key, entries[key], value)
        if why:
            notes.append(why)
        else:
            good[key] = value
    return good, notes


def stored_defaults(ui) -> tuple[dict[str, Any], list[str]]:
    """The saved UI defaults the widgets still allow (a choice may be gone since), and notes on the rest."""
    values, notes = ui_defaults.read(ui.engine.config)
    good, problems = checked(ui, values)
    return good, notes + problems


def base_defaults(ui, settings: UserSettings | None) -> dict[str, Any]:
    """Every key's default before imported UI defaults: built values under the Settings tab's saved ones."""
    native = ui.engine.models.current.native_size if ui.engine.models.current else ui.native_size
    values = {key: entry.built for key, entry in catalog(ui).items()}
    if settings is not None:
        for key in values:
            name = key.split("/")[1]
            if name in TAB_FIELDS:
                value = getattr(settings, name)
                values[key] = value or native if name in ("width", "height") else value
    return values


def export_file(values: dict[str, Any]) -> str:
    """The defaults as a ui-config.json in Gradio's own folder (served from there), one file per content."""
    data = json.dumps(values, indent=2, ensure_ascii=False).encode("utf-8")
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")
    folder = root / "ui-config-export" / hashlib.sha256(data).hexdigest()[:20]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ui_defaults.FILE_NAME
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".json")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    return str(path)


@dataclass
class UiConfigWidgets:
    export: gr.Button
    exported: gr.File  # the file Export made, with its download link
    upload: gr.UploadButton
    status: gr.Markdown


def build() -> UiConfigWidgets:
    """Inside the Settings tab."""
    gr.Markdown("### UI defaults (ui-config.json)\nEvery tab's widget defaults as one JSON file, keyed "
                "`<tab>/<input>/value`: export them, edit or keep the file, and import it here or into another ldm-ui "
                "copy. Imported values apply at once and on every page load.")
    with gr.Row():
        export = gr.Button("Export UI defaults", elem_id="ui-config-export")
        upload = gr.UploadButton("Import UI defaults", file_types=[".json"], file_count="single", type="filepath",
                                 elem_id="ui-config-import")
    exported = gr.File(label="Exported UI defaults", interactive=False, visible=False, elem_id="ui-config-file")
    status = gr.Markdown("", elem_id="ui-config-status")
    return UiConfigWidgets(export, exported, upload, status)


def wire(ui, widgets: UiConfigWidgets, settings_of) -> None:
    """settings_of(): the Settings tab's saved defaults, or None when nothing is saved."""
    config = ui.engine.config
    entries = catalog(ui)
    keys = list(entries)

    def do_import(path: str | None, request: gr.Request):
        skip = [gr.skip()] * len(keys)
        if not is_admin(config, request.username):  # app-wide: every user's page
            return [f"⚠️ {not_admin_message('import UI defaults')}"] + skip
        if not path:
            return [""] + skip
        try:
            if os.path.getsize(path) > MAX_IMPORT_BYTES:
                raise ValueError(f"{Path(path).name} is over {MAX_IMPORT_BYTES // 1024} KB; a ui-config.json is "
                                 "a few KB")
            values = ui_defaults.parse(Path(path).read_bytes(), Path(path).name)
        except (OSError, ValueError) as error:
            return [f"⚠️ Not imported: {html.escape(str(error))}"] + skip
        good, notes = checked(ui, values)
        settings = settings_of()
        base, before = base_defaults(ui, settings), page_values(ui, settings)[0]
        try:
            ui_defaults.write(config, {k: v for k, v in good.items() if v != base[k]})
        except OSError as error:
            return [f"⚠️ Not imported: {html.escape(str(error))}"] + skip
        changed = [key for key, value in good.items() if value != before[key]]
        shown = ", ".join(f"{key} = {good[key]!r}" for key in changed[:10]) + (", …" if len(changed) > 10 else "")
        lines = [f"Imported {len(good)} default{'s' if len(good) != 1 else ''}, {len(changed)} of them changed"
                 f"{': ' + html.escape(shown) if changed else ''}. They apply now and on every page load."]
        if notes:
            lines.append(f"Left out {len(notes)}:")
            lines += [f"- {html.escape(note)}" for note in notes]
        return ["\n".join(lines)] + [good[key] if key in good else gr.skip() for key in keys]

    widgets.upload.upload(do_import, widgets.upload, [widgets.status, *(entries[k].component for k in keys)],
                          queue=False, api_visibility="private", show_progress="hidden")

    def do_export():
        return gr.update(value=export_file(page_values(ui, settings_of())[0]), visible=True)

    widgets.export.click(do_export, None, widgets.exported, queue=False, api_visibility="private")


def page_values(ui, settings: UserSettings | None) -> tuple[dict[str, Any], list[str]]:
    """key -> the default a freshly loaded page shows, and notes on stored UI defaults left out."""
    stored, notes = stored_defaults(ui)
    return {**base_defaults(ui, settings), **stored}, notes


def forget(ui, names: tuple[str, ...]) -> list[str]:
    """Drop the stored UI defaults of these inputs in every tab (the Settings tab just set them); their keys."""
    values, _ = ui_defaults.read(ui.engine.config)
    dropped = [key for key in values if key.count("/") == 2 and key.split("/")[1] in names]
    if dropped:
        ui_defaults.write(ui.engine.config, {k: v for k, v in values.items() if k not in dropped})
    return dropped
