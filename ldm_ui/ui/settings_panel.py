"""The Settings tab's remembered defaults: sampler, steps, CFG, size and the live preview, saved to the app's data
folder and put into every generation tab when the app starts and whenever the page is (re)loaded."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from ldm_ui import user_settings
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.requests import MAX_CFG, MAX_SIZE, MAX_STEPS, RequestError
from ldm_ui.user_settings import UserSettings


@dataclass
class SettingsWidgets:
    sampler: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    save: gr.Button
    status: gr.Markdown


def build(ui) -> SettingsWidgets:
    """Inside the Settings tab, after the preview widgets."""
    saved, notes = user_settings.load(ui.engine.config)
    gr.Markdown("### Defaults for every generation tab")
    with gr.Row():
        sampler = gr.Dropdown(list(SAMPLER_NAMES), value=saved.sampler, label="Default sampler",
                              elem_id="settings-sampler")
        steps = gr.Slider(1, MAX_STEPS, value=saved.steps, step=1, label="Default steps", elem_id="settings-steps")
        cfg = gr.Slider(0, MAX_CFG, value=saved.cfg_scale, step=0.5, label="Default CFG scale",
                        elem_id="settings-cfg")
    with gr.Row():
        width = gr.Slider(0, MAX_SIZE, value=saved.width, step=8, label="Default width (0 = the model's size)",
                          elem_id="settings-width")
        height = gr.Slider(0, MAX_SIZE, value=saved.height, step=8, label="Default height (0 = the model's size)",
                           elem_id="settings-height")
    save = gr.Button("Save settings", variant="primary", elem_id="settings-save")
    path = user_settings.settings_path(ui.engine.config)
    status = gr.Markdown("".join(f"⚠️ {html.escape(n)}  \n" for n in notes) or f"Saved settings live in `{path}`.",
                         elem_id="settings-status")
    return SettingsWidgets(sampler, steps, cfg, width, height, save, status)


def _tab_widgets(ui) -> list:
    widgets = []
    for controls, _panel in ui.tabs.values():
        widgets += [controls.sampler, controls.steps, controls.cfg_scale, controls.width, controls.height]
    return widgets


def _tab_values(ui, settings: UserSettings) -> list:
    native = ui.engine.models.current.native_size if ui.engine.models.current else ui.native_size
    values = []
    for _ in ui.tabs:
        values += [settings.sampler, settings.steps, settings.cfg_scale, settings.width or native,
                   settings.height or native]
    return values


def wire(ui, demo: gr.Blocks, widgets: SettingsWidgets) -> None:
    """Save -> the file, the engine's preview defaults and every tab; page load -> the saved values everywhere
    (the tabs' widgets only when no --preset chose the starting values)."""
    config = ui.engine.config
    own = [widgets.sampler, widgets.steps, widgets.cfg_scale, widgets.width, widgets.height, ui.preview_method,
           ui.preview_every]
    tabs = _tab_widgets(ui)

    def save(sampler, steps, cfg, width, height, preview_method, preview_every):
        try:
            settings = UserSettings(sampler=sampler, steps=int(steps), cfg_scale=float(cfg), width=int(width),
                                    height=int(height), preview_method=preview_method,
                                    preview_every_n_steps=int(preview_every))
            path = user_settings.save(config, settings)
        except (ValueError, TypeError, OSError, RequestError) as error:
            return [f"⚠️ Not saved: {html.escape(str(error))}"] + [gr.skip()] * len(tabs)
        config.preview_method, config.preview_every_n_steps = settings.preview_method, settings.preview_every_n_steps
        return [f"Saved to `{path}`; every tab now starts from these values."] + _tab_values(ui, settings)

    widgets.save.click(save, own, [widgets.status, *tabs], queue=False, api_visibility="private")

    def on_load():
        if not user_settings.settings_path(config).is_file():  # nothing saved: the widgets already hold the defaults
            return [gr.skip()] * (len(own) + len(tabs))
        settings, _ = user_settings.load(config)
        mine = [settings.sampler, settings.steps, settings.cfg_scale, settings.width, settings.height,
                settings.preview_method, settings.preview_every_n_steps]
        return mine + (_tab_values(ui, settings) if config.preset is None else [gr.skip()] * len(tabs))

    demo.load(on_load, None, [*own, *tabs], queue=False, api_visibility="private", show_progress="hidden")
