"""The preset row of every generation tab: pick a preset to fill the tab's widgets, or save the current ones.

`attach(ui, library)` runs after all tabs are built: it adds a "Preset" accordion to each registered generation
tab (ui.tabs) and wires it to that tab's GenerationControls.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

from ldm_ui.presets import Preset, PresetError, PresetLibrary, preset_from_settings
from ldm_ui.ui.common import GenerationControls

log = logging.getLogger(__name__)


def preset_updates(preset: Preset, prompt: str, current_model: str | None, installed: list[str],
                   previous: Preset | None = None) -> tuple[list, str]:
    """Updates for [prompt, negative, sampler, steps, cfg, width, height, model, preview method] and a note.

    `previous` is the preset applied before in this tab: its LoRA tags and style come out of the prompt first.
    """
    keep = gr.skip()
    original = prompt or ""
    prompt = previous.prompt_without(original) if previous is not None else original
    description = f" {_md(preset.description)}" if preset.description else ""
    notes = [f"Applied preset **{_md(preset.name)}**.{description}"]
    model = keep
    if preset.model and preset.model != current_model:
        if preset.model in installed:
            model = preset.model
        else:
            notes.append(f"⚠️ Its model `{_md(preset.model)}` is not in your models folder, so the current model "
                         "stays selected; download it or type its hub id in the model box.")

    if preset.style and not (prompt or "").strip():
        notes.append(f"Its style `{_md(preset.style)}` wraps your prompt: type one and pick the preset "
                     "again.")

    new_prompt = preset.prompt_for(prompt)

    def value(v: Any) -> Any:
        return keep if v is None else v

    updates = [
        new_prompt if new_prompt != original else keep,
        value(preset.negative_prompt), value(preset.sampler), value(preset.steps), value(preset.cfg_scale),
        value(preset.width), value(preset.height), model, value(preset.preview_method),
    ]
    return updates, " ".join(notes)


def initial_values(controls: GenerationControls, preset: Preset, prompt: str = "") -> None:
    """Make `preset` the widgets' starting values (for --preset): Gradio sends `.value` when it builds the page."""
    pairs = [(controls.negative_prompt, preset.negative_prompt), (controls.sampler, preset.sampler),
             (controls.steps, preset.steps), (controls.cfg_scale, preset.cfg_scale), (controls.width, preset.width),
             (controls.height, preset.height)]
    if preset.style or preset.loras:
        pairs.append((controls.prompt, preset.prompt_for(prompt)))
    for component, value in pairs:
        if value is not None:
            component.value = component.postprocess(value)


def errors_markdown(library: PresetLibrary) -> str:
    if not library.errors:
        return ""
    lines = "\n".join(f"- ⚠️ {_md(error)}" for error in library.errors)
    return f"These presets were not loaded:\n{lines}"


def attach_from_config(ui, config) -> dict[str, gr.Dropdown]:
    """Load presets/ and attach the preset row; `config.preset` (--preset) becomes the starting values."""
    library = PresetLibrary.load(config.presets_dir)
    initial = config.preset if config.preset in library.presets else None
    return attach(ui, library, initial)


def attach(ui, library: PresetLibrary, initial: str | None = None) -> dict[str, gr.Dropdown]:
    """Add the preset accordion to every generation tab in `ui.tabs`; returns the dropdowns by tab name."""
    engine = ui.engine
    dropdowns: dict[str, gr.Dropdown] = {}
    rows: dict[str, tuple] = {}
    for name, (controls, _panel) in ui.tabs.items():
        tab = _tab_component(ui, name)
        if tab is None:
            continue
        with _preset_slot(ui, name) or tab:  # at the top of the tab, above the prompt
            with gr.Group(elem_id=f"{name}-preset-box"):
                with gr.Row(equal_height=True):
                    dropdown = gr.Dropdown(library.names(), value=initial, label="Preset", scale=3,
                                           elem_id=f"{name}-preset",
                                           info="fills this tab's settings from presets/<name>.json")
                    reload = gr.Button("↻ Reload presets", size="sm", scale=0, min_width=140,
                                       elem_id=f"{name}-preset-reload")
                status = gr.Markdown(errors_markdown(library), elem_id=f"{name}-preset-status")
                with gr.Accordion("Save the current settings as a preset", open=False,
                                  elem_id=f"{name}-preset-save-box"):
                    with gr.Row():
                        new_name = gr.Textbox(label="Preset name", placeholder="my-preset", scale=3, max_lines=1,
                                              elem_id=f"{name}-preset-name")
                        overwrite = gr.Checkbox(label="Overwrite if it exists", value=False, scale=1,
                                                elem_id=f"{name}-preset-overwrite")
                        save = gr.Button("Save preset", size="sm", scale=0, min_width=140,
                                         elem_id=f"{name}-preset-save")
        dropdowns[name] = dropdown
        rows[name] = (controls, dropdown, reload, status, new_name, overwrite, save)

    all_dropdowns = list(dropdowns.values())
    for name, (controls, dropdown, reload, status, new_name, overwrite, save) in rows.items():
        targets = [controls.prompt, controls.negative_prompt, controls.sampler, controls.steps, controls.cfg_scale,
                   controls.width, controls.height, ui.model, ui.preview_method]

        def apply(preset_name, prompt, current_model, previous_name, request: gr.Request, targets=targets):
            if not preset_name:
                return [gr.skip()] * len(targets) + [gr.skip(), gr.skip()]
            user = _user(request)
            try:
                preset = library.get(preset_name, user)
            except PresetError as error:
                return [gr.skip()] * len(targets) + [f"⚠️ {_md(str(error))}", gr.skip()]
            previous = None
            if previous_name and previous_name in library.names(user):
                previous = library.get(previous_name, user)
            updates, note = preset_updates(preset, prompt, current_model, engine.models.model_names(), previous)
            log.info("applied preset %s", preset.name)
            return updates + [note, preset.name]

        def save_preset(preset_name, replace, prompt, negative_prompt, sampler, steps, cfg_scale, width, height,
                        model, preview_method, request: gr.Request, all_dropdowns=all_dropdowns):
            settings = dict(prompt=prompt, negative_prompt=negative_prompt, sampler=sampler,
                            steps=_number(steps), cfg_scale=_number(cfg_scale), width=_number(width),
                            height=_number(height), model=model or None, preview_method=preview_method)
            keep = [gr.skip()] * len(all_dropdowns)
            try:
                preset = preset_from_settings(preset_name, settings)
                path = library.save(preset, overwrite=bool(replace), user=_user(request))
            except PresetError as error:
                return [f"⚠️ {_md(str(error))}", gr.skip(), gr.skip()] + keep
            log.info("saved preset %s", path)
            choices = [gr.update(choices=library.names(_user(request))) for _ in all_dropdowns]
            return [f"Saved preset **{_md(preset.name)}** to `{_md(path.name)}`.", "", False] + choices

        def reload_presets(request: gr.Request):
            library.reload()
            names = library.names(_user(request))
            return [errors_markdown(library) or f"{len(names)} preset(s) loaded."] + \
                [gr.update(choices=names) for _ in all_dropdowns]

        applied = gr.State(initial)  # the preset last applied in this tab, whose LoRA tags a new one replaces
        dropdown.input(apply, [dropdown, controls.prompt, ui.model, applied], [*targets, status, applied],
                       queue=False, api_name=False)
        save.click(save_preset, [new_name, overwrite, controls.prompt, controls.negative_prompt, controls.sampler,
                                 controls.steps, controls.cfg_scale, controls.width, controls.height, ui.model,
                                 ui.preview_method],
                   [status, new_name, overwrite, *all_dropdowns], queue=False, api_name=False)
        reload.click(reload_presets, None, [status, *all_dropdowns], queue=False, api_name=False)
    if initial:
        preset = library.get(initial)
        for controls, *_ in rows.values():
            initial_values(controls, preset)
        if preset.preview_method and ui.preview_method is not None:
            ui.preview_method.value = preset.preview_method
    return dropdowns


def _user(request: gr.Request | None) -> str | None:
    """The signed-in user whose own presets folder is used; None without logins (the shared folder)."""
    return getattr(request, "username", None)


def _number(value: Any) -> Any:
    """Sliders send floats; a whole float becomes an int so the preset file reads 25, not 25.0."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _tab_component(ui, name: str):
    for key, tab in ui.tab_components.items():
        if key == name or key.lower().replace(" ", "-") == name.lower():
            return tab
    return None


def _preset_slot(ui, name: str):
    for key, slot in ui.preset_slots.items():
        if key == name or key.lower().replace(" ", "-") == name.lower():
            return slot
    return None


def _md(text: str) -> str:
    """Text safe inside Markdown: no HTML tags from a file or name get through; quotes stay readable."""
    return html.escape(text, quote=False)
