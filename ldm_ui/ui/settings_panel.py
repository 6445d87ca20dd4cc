"""The Settings tab's remembered settings: the generation tabs' defaults (sampler, steps, CFG, size, clip skip), the
live preview, and how images are saved (format and quality, filename pattern, the infotext as a .txt). Saved to
the app's data folder, applied when the app starts, and put into every generation tab whenever the page is
(re)loaded."""

from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from ldm_ui import user_settings
from ldm_ui.access import is_admin, not_admin_message
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.requests import MAX_CFG, MAX_CLIP_SKIP, MAX_SIZE, MAX_STEPS, RequestError
from ldm_ui.save_options import ALLOWED_TAGS, SAMPLE_FORMATS
from ldm_ui.ui import ui_config_panel
from ldm_ui.user_settings import TAB_FIELDS, UserSettings

FORMAT_NOTE = ("JPEG and WebP keep the infotext in EXIF, as AUTOMATIC1111 does. JPEG has no transparency: "
               "transparent pixels are flattened onto white. An image a format cannot hold (JPEG above 65,500 px a "
               "side, WebP above 16,383) is saved as PNG.")
# the order of the widgets' values in the save handler and on page load (UserSettings' field names)
OWN_FIELDS = ("sampler", "steps", "cfg_scale", "width", "height", "clip_skip", "samples_format", "jpeg_quality",
              "filename_pattern", "save_txt")


@dataclass
class SettingsWidgets:
    sampler: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    clip_skip: gr.Slider
    samples_format: gr.Radio
    jpeg_quality: gr.Slider
    filename_pattern: gr.Textbox
    save_txt: gr.Checkbox
    save: gr.Button
    status: gr.Markdown
    ui_config: ui_config_panel.UiConfigWidgets

    def own(self) -> list:
        return [getattr(self, name) for name in OWN_FIELDS]


def build(ui) -> SettingsWidgets:
    """Inside the Settings tab, after the preview widgets. The saved settings are applied to the app here, once,
    as it starts."""
    saved, notes = user_settings.load_and_apply(ui.engine.config)
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
        clip_skip = gr.Slider(1, MAX_CLIP_SKIP, value=saved.clip_skip, step=1, label="Default clip skip",
                              info="also for API requests that name none", elem_id="settings-clip-skip")
    gr.Markdown("### Saving images")
    with gr.Row():
        samples_format = gr.Radio(list(SAMPLE_FORMATS), value=saved.samples_format, label="File format",
                                  info=FORMAT_NOTE, elem_id="settings-format")
        quality = gr.Slider(1, 100, value=saved.jpeg_quality, step=1, label="JPEG / WebP quality",
                            elem_id="settings-quality")
    with gr.Row():
        pattern = gr.Textbox(value=saved.filename_pattern, label="Filename pattern (empty: the seed)",
                             placeholder="[seed]-[prompt_words]", max_lines=1, elem_id="settings-pattern",
                             info=f"after the running number (00012-...); tags: {ALLOWED_TAGS}")
        save_txt = gr.Checkbox(value=saved.save_txt, label="Also save the infotext as a .txt beside each image",
                               elem_id="settings-save-txt")
    save = gr.Button("Save settings", variant="primary", elem_id="settings-save")
    path = user_settings.settings_path(ui.engine.config)
    status = gr.Markdown("".join(f"⚠️ {html.escape(n)}  \n" for n in notes) or f"Saved settings live in `{path}`.",
                         elem_id="settings-status")
    ui_config = ui_config_panel.build()
    return SettingsWidgets(sampler, steps, cfg, width, height, clip_skip, samples_format, quality, pattern, save_txt,
                           save, status, ui_config)


def _tab_widgets(ui) -> list:
    return [getattr(controls, name) for controls, _panel in ui.tabs.values() for name in TAB_FIELDS]


def _tab_values(ui, settings: UserSettings) -> list:
    native = ui.engine.models.current.native_size if ui.engine.models.current else ui.native_size
    sizes = {"width": settings.width or native, "height": settings.height or native}
    return [sizes.get(name, getattr(settings, name)) for _ in ui.tabs for name in TAB_FIELDS]


def _values(settings: UserSettings) -> list:
    return [getattr(settings, name) for name in OWN_FIELDS]


def _saved(config) -> UserSettings | None:
    return user_settings.load(config)[0] if user_settings.settings_path(config).is_file() else None


def wire(ui, demo: gr.Blocks, widgets: SettingsWidgets) -> None:
    """Save -> the file, the app (previews, clip skip, saving) and every tab; page load -> the saved values
    everywhere, with the imported UI defaults over them (the tabs' widgets only when no --preset chose the
    starting values)."""
    config = ui.engine.config
    own = [*widgets.own(), ui.preview_method, ui.preview_every]
    tabs = _tab_widgets(ui)
    numbers = {"steps": int, "cfg_scale": float, "width": int, "height": int, "clip_skip": int, "jpeg_quality": int}

    def save(sampler, steps, cfg_scale, width, height, clip_skip, samples_format, jpeg_quality, filename_pattern,
             save_txt, preview_method, preview_every, request: gr.Request):
        if not is_admin(config, request.username):  # app-wide: every user's jobs and files
            return [f"⚠️ {not_admin_message('change the settings')}"] + [gr.skip()] * len(tabs)
        values = (sampler, steps, cfg_scale, width, height, clip_skip, samples_format, jpeg_quality, filename_pattern,
                  save_txt, preview_method, preview_every)
        changes = dict(zip([*OWN_FIELDS, "preview_method", "preview_every_n_steps"], values))
        try:
            changes = {name: numbers.get(name, lambda v: v)(value) for name, value in changes.items()}
            changes["preview_every_n_steps"] = int(changes["preview_every_n_steps"])
            changes["filename_pattern"] = (changes["filename_pattern"] or "").strip()
            settings = user_settings.update(config, **changes)
            dropped = ui_config_panel.forget(ui, TAB_FIELDS)
        except (ValueError, TypeError, OSError, RequestError) as error:
            return [f"⚠️ Not saved: {html.escape(str(error))}"] + [gr.skip()] * len(tabs)
        path = user_settings.settings_path(config)
        note = (f" These replace the imported UI defaults {', '.join(dropped)}." if dropped else "")
        return [f"Saved to `{path}`; every tab now starts from these values.{html.escape(note)}"] + _tab_values(ui, settings)

    widgets.save.click(save, own, [widgets.status, *tabs], queue=False, api_visibility="private")
    ui_config_panel.wire(ui, widgets.ui_config, lambda: _saved(config))
    entries = ui_config_panel.catalog(ui)

    def on_load():
        settings = _saved(config)
        mine = ([gr.skip()] * len(own) if settings is None else
                _values(settings) + [settings.preview_method, settings.preview_every_n_steps])
        defaults, notes = ui_config_panel.page_values(ui, settings)
        # only what differs from what the widget was built with: a fresh page already shows the rest
        tabs = [defaults[key] if config.preset is None and defaults[key] != entry.built else gr.skip()
                for key, entry in entries.items()]
        problems = ("⚠️ Saved UI defaults left out:\n" + "\n".join(f"- {html.escape(n)}" for n in notes)
                    if notes else gr.skip())
        return [*mine, *tabs, problems]

    demo.load(on_load, None, [*own, *(entry.component for entry in entries.values()), widgets.ui_config.status],
              queue=False, api_visibility="private", show_progress="hidden")
