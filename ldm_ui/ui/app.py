"""Assemble the Gradio Blocks app: shared widgets on top, one tab per task, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ldm_ui.config import PREVIEW_METHODS
from ldm_ui.ownership import OutputOwners
from ldm_ui.uploads import UploadRegistry, delete_on_session_end
from ldm_ui.ui.common import (
    GenerationControls, OutputPanel, new_session_state, one_line, render_status, without_server_paths,
)
from ldm_ui.ui import family_controls, settings_panel
from ldm_ui.ui.startup import guess_native_size
from ldm_ui.ui.vae_picker import build_vae_picker, wire_vae_picker


@dataclass
class UiContext:
    """What every tab module gets: the engine, the shared widgets, and a place to register itself."""

    engine: Any
    native_size: int
    model: gr.Dropdown
    session: gr.State
    preview_method: gr.Radio | None = None
    preview_every: gr.Slider | None = None
    tabs: dict[str, tuple[GenerationControls, OutputPanel]] = field(default_factory=dict)
    input_tables: dict[str, Any] = field(default_factory=dict)  # tab -> its InputTable (UI defaults export/import)
    send_buttons: dict[str, dict[str, gr.Button]] = field(default_factory=dict)
    tab_components: dict[str, gr.Tab] = field(default_factory=dict)
    preset_slots: dict[str, gr.Column] = field(default_factory=dict)  # an empty column at the top of each tab
    tab_group: gr.Tabs | None = None  # an output that switches tabs: gr.Tabs(selected=<tab id>)
    # wiring that needs every tab to exist (send-to buttons); each runs once as finish(ui) after the tabs
    after_build: list = field(default_factory=list)
    image_inputs: dict[str, Any] = field(default_factory=dict)  # target tab -> the image input "Send to" fills
    startup: Any = None  # the StartupLoad of the first model (ldm_ui/ui/startup.py), or None
    hires_panel: Any = None  # txt2img's hires fix widgets (ui/hires_panel.py), for PNG info's "Send to"
    seed_extras: dict[str, Any] = field(default_factory=dict)  # tab -> its SeedExtras (PNG info fills them)
    refiner_panels: dict[str, Any] = field(default_factory=dict)  # tab -> its RefinerPanel (PNG info fills them)
    owners: OutputOwners | None = None  # who made which output: with logins on, History shows a user their own
    # tab -> {"controlnet": its ControlNet accordion, "seed_extras": its variation accordion}: hidden for a family
    # that lacks the feature (ui/family_controls.py)
    family_accordions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def shared_fields(self) -> list[tuple[str, Any]]:
        """The InputTable rows every generation tab ends with (the session is no API parameter)."""
        return [("model", self.model), ("preview_method", self.preview_method),
                ("preview_every", self.preview_every), ("session", self.session)]

    def register_tab(self, name: str, controls: GenerationControls, panel: OutputPanel,
                     send_buttons: dict[str, gr.Button] | None = None) -> None:
        self.tabs[name] = (controls, panel)
        self.send_buttons[name] = send_buttons or {}


def build_ui(engine, banner: str | None = None, extra_tabs: list | None = None,
             loading_model: str | None = None, owners=None, uploads: UploadRegistry | None = None) -> gr.Blocks:
    """loading_model: the model app.py loads in the background once the UI is built (its StartupLoad goes into
    `demo.ldm_ui.startup`); the header says so until it is in. owners: who made which output (History per user).
    uploads: who uploaded what (ldm_ui/uploads.py); a session's files go when it ends.

    The queue is set here, and everything is wired inside the one `with`: Gradio rebuilds its whole config and web
    app at each outermost exit and at each `queue()` call (about 0.3 s each for this app, on the start-up path)."""
    config = engine.config
    current = engine.models.current
    loading = loading_model if current is None else None
    if current:
        native, selected = current.native_size, current.entry.name
    elif loading:
        native, selected = guess_native_size(engine, loading), loading
    else:
        native, selected = 512, None
    with gr.Blocks(title="ldm-ui", analytics_enabled=False) as demo:
        # every event may run at once: jobs wait in the engine's own queue, which the status line shows
        demo.queue(default_concurrency_limit=None)
        if uploads is not None:
            demo.ldm_uploads = uploads  # the guard asks it who uploaded a file (ldm_ui/guard.py)
            delete_on_session_end(demo, uploads)
        if banner:
            gr.HTML(f'<div class="ldm-banner">{banner}</div>')
        with gr.Row(equal_height=True):
            model = gr.Dropdown(engine.models.model_names(), value=selected,
                                label="Model (or type a hub id)", allow_custom_value=True, scale=4,
                                elem_id="model-select")
            vae, vae_status = build_vae_picker(engine)
            refresh = gr.Button("↻ Refresh list", size="sm", scale=0, min_width=120, elem_id="model-refresh")
            with gr.Column(scale=2):
                model_status = gr.Markdown(f"⏳ Loading model **{loading}**…" if loading else _model_summary(current),
                                           elem_id="model-status")
                vae_status.render()
        # errors get the page's full width: a long message squeezed into the header column is unreadable
        model_error = gr.HTML("", elem_id="model-error", visible=False)
        ui = UiContext(engine=engine, native_size=native, model=model, session=new_session_state(), owners=owners)
        # settings widgets are created first (unrendered) so every tab can take them as inputs
        ui.preview_method = gr.Radio(list(PREVIEW_METHODS), value=config.preview_method, render=False,
                                     label="Live preview method",
                                     info="auto: a VAE decode where it is cheap (a small model at a small size), "
                                          "else approx; approx: linear latent->RGB (cheap); full: VAE decode; off")
        ui.preview_every = gr.Slider(1, 50, value=config.preview_every_n_steps, step=1, render=False,
                                     label="Preview every N steps")
        with gr.Tabs() as tab_group:
            ui.tab_group = tab_group
            with gr.Tab("txt2img", id="txt2img") as tab:
                from ldm_ui.ui import txt2img

                ui.preset_slots["txt2img"] = gr.Column()  # presets_ui fills it: the preset row tops the tab
                txt2img.build(ui)
            ui.tab_components["txt2img"] = tab
            for title, builder in extra_tabs or []:
                with gr.Tab(title, id=title.lower().replace(" ", "-")) as tab:
                    ui.preset_slots[title] = gr.Column()
                    builder(ui)
                ui.tab_components[title] = tab
            with gr.Tab("Settings", id="settings"):
                ui.preview_method.render()
                ui.preview_every.render()
                settings_widgets = settings_panel.build(ui)
                gr.Markdown(f"Outputs are saved under `{config.outputs_dir}`. Models are read from "
                            f"`{config.models_dir}`.")

        from ldm_ui.ui import presets_ui

        presets_ui.attach_from_config(ui, config)
        for finish in ui.after_build:
            finish(ui)
        settings_panel.wire(ui, demo, settings_widgets)
        refresh.click(lambda: gr.update(choices=engine.models.model_names()), None, model, queue=False,
                      api_name=False)
        wire_vae_picker(engine, vae, vae_status, refresh, model, model_status)
        size_targets = [c.width for c, _ in ui.tabs.values()] + [c.height for c, _ in ui.tabs.values()]
        header = [model_status, model_error, model]
        # each tab's controls follow the loaded model's family (disabled or hidden with a note in the tab)
        family_tabs = family_controls.tab_family_controls(ui)
        family_targets = family_controls.family_outputs(family_tabs)
        # input, not change: setting the selector back after a failed load must not start another load
        model.input(lambda name: _switch_model(engine, name, len(size_targets), family_tabs), model,
                    [*header, *size_targets, *family_targets], concurrency_limit=None, api_name=False,
                    show_progress="hidden")
        if loading:
            demo.load(lambda *sizes: _after_startup(ui.startup, native, sizes, family_tabs), size_targets,
                      [*header, *size_targets, *family_targets], api_name=False, show_progress="hidden")
        else:
            demo.load(lambda: family_controls.family_updates(family_tabs, engine.models.current), None,
                      family_targets, api_name=False, show_progress="hidden", queue=False)
    demo.ldm_ui = ui  # tests and extensions reach the tab widgets through this
    return demo


def _model_summary(loaded) -> str:
    if loaded is None:
        return "No model loaded."
    return f"**{loaded.entry.name}** · {loaded.family} · native {loaded.native_size}px · hash `{loaded.model_hash}`"


def _switch_model(engine, name: str, size_outputs: int, family_tabs=()):
    """Load the picked model; sizes follow its native size only when the model really changed. On failure the
    selector goes back to the loaded model, so later jobs keep using it."""
    # the name only: holding the loaded model here would keep its weights alive while the next one loads
    previous = engine.models.current.entry.name if engine.models.current else None
    unchanged = [gr.skip()] * len(family_controls.family_outputs(family_tabs))
    if not name or name == previous:
        return [gr.skip()] * (3 + size_outputs) + unchanged  # includes the selector being set back after a failure
    try:
        loaded = engine.switch_model(name)
    except Exception as error:  # noqa: BLE001 - shown to the user, the app keeps serving
        loaded = engine.models.current.entry.name if engine.models.current else None
        back = loaded or previous  # the engine may have unloaded the old model first, to make room
        note = (f"{back!r} is still loaded." if loaded else
                f"{back!r} stays selected and loads again with the next job." if back else "No model is loaded.")
        return [gr.skip(), _error(f"Could not load {name!r}: {one_line(error, engine.config)} {note}"),
                gr.update(value=back)] + [gr.skip()] * size_outputs + unchanged
    sizes = [gr.skip()] * size_outputs if loaded.entry.name == previous else [loaded.native_size] * size_outputs
    return ([_model_summary(loaded), gr.update(value="", visible=False), gr.skip()] + sizes
            + family_controls.family_updates(family_tabs, loaded))


def _after_startup(startup, guessed_size: int, sizes: tuple, family_tabs=()):
    """Once the first model is in: its summary (or why it failed), its native size where the guess was wrong, and
    the tabs' controls for its family."""
    startup.wait()
    if startup.error:
        message = f"Could not load {startup.model!r}: {without_server_paths(startup.error, startup.engine.config)}"
        return (["No model loaded.", _error(message), gr.skip()] + [gr.skip()] * len(sizes)
                + [gr.skip()] * len(family_controls.family_outputs(family_tabs)))
    loaded = startup.engine.models.current
    fix = [loaded.native_size if size == guessed_size != loaded.native_size else gr.skip() for size in sizes]
    return ([_model_summary(loaded), gr.update(value="", visible=False), gr.skip()] + fix
            + family_controls.family_updates(family_tabs, loaded))


def _error(text: str):
    return gr.update(value=render_status(text, kind="error"), visible=True)
