"""The Extensions tab: what was found, what failed and why, a toggle per extension, and their settings.

It has no install or update button on purpose: extensions are code, and code only arrives by the machine's
owner copying a folder into extensions/ (so --share and --listen users cannot add any).
"""

from __future__ import annotations

import html
from typing import Callable

import gradio as gr

from ldm_ui.access import is_admin, not_admin_message
from ldm_ui.extensions import ExtensionManager, ExtensionRecord
from ldm_ui.requests import RequestError

STATE_TEXT = {
    "enabled": "enabled",
    "failed": "disabled after an error",
    "off": "turned off",
    "skipped": "not loaded (--disable-extensions)",
    "found": "not loaded",
}
STATE_COLOR = {"enabled": "#2a2", "failed": "#d33"}


def render_table(manager: ExtensionManager) -> str:
    if not manager.records:
        return (f"<p>No extensions found in <code>{html.escape(str(manager.config.extensions_dir))}</code>. "
                "Copy an extension's folder there and restart the app.</p>")
    rows = []
    for record in manager.records.values():
        text = STATE_TEXT.get(record.state, record.state)
        color = STATE_COLOR.get(record.state, "#c80")
        adds = ", ".join(record.registered) or "—"
        error = f'<div class="ldm-ext-error">{html.escape(record.error)}</div>' if record.error else ""
        rows.append(f'<tr data-extension="{html.escape(record.name)}" data-state="{record.state}">'
                    f'<td><b>{html.escape(record.name)}</b></td><td><span style="color:{color};font-weight:600">'
                    f"{html.escape(text)}</span>{error}</td>"
                    f"<td>{html.escape(adds)}</td></tr>")
    return ('<table class="ldm-ext-table"><thead><tr><th>Extension</th><th>State</th><th>Adds</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def failure_banner(manager: ExtensionManager) -> str:
    failed = manager.failures()
    if not failed:
        return ""
    names = ", ".join(f"**{r.name}**" for r in failed)
    return f"⚠️ Extension(s) disabled after an error: {names}. Details below and in the log."


def build(manager: ExtensionManager):
    """The tab builder for build_ui's extra_tabs list."""

    def builder(ui) -> None:
        banner = gr.Markdown(failure_banner(manager), elem_id="extensions-banner")
        table = gr.HTML(render_table(manager), elem_id="extensions-table")
        with gr.Row():
            refresh = gr.Button("↻ Refresh status", size="sm", scale=0, min_width=160, elem_id="extensions-refresh")
            message = gr.Markdown("", elem_id="extensions-message")
        gr.Markdown(
            "Extensions are folders in `extensions/`, loaded when the app starts. Turning one off stops its "
            "prompt transforms and step hooks at once and is remembered across restarts; its tabs go away at the "
            "next start. This UI cannot install or update extensions: copy a folder in by hand and restart."
        )
        for record in manager.records.values():
            _record_controls(manager, record, table, banner, message)
        refresh.click(lambda: (render_table(manager), failure_banner(manager)), None, [table, banner],
                      queue=False, api_name=False)
        # hook failures happen during jobs: refresh the report while the tab is open
        timer = gr.Timer(5.0)
        timer.tick(lambda: (render_table(manager), failure_banner(manager)), None, [table, banner],
                   queue=False, api_name=False, show_progress="hidden")

    return builder


def _record_controls(manager: ExtensionManager, record: ExtensionRecord, table, banner, message) -> None:
    name = record.name
    with gr.Accordion(f"{name}: on/off and settings", open=bool(record.settings), elem_id=f"extension-{name}"):
        toggle = gr.Checkbox(label=f"Enable {name}", value=record.state not in ("off",),
                             interactive=record.state != "skipped", elem_id=f"extension-{name}-enabled")

        def on_toggle(enabled: bool, request: gr.Request):
            if not is_admin(manager.config, request.username):  # app-wide: it changes every user's jobs
                return (not_admin_message("turn extensions on or off"), render_table(manager),
                        failure_banner(manager), record.state != "off")
            text = manager.set_enabled(name, bool(enabled))
            return text, render_table(manager), failure_banner(manager), gr.skip()

        toggle.input(on_toggle, toggle, [message, table, banner, toggle], queue=False, api_name=False)
        for key, setting in record.settings.items():
            widget = _setting_widget(setting, f"extension-{name}-{key}")

            def on_change(value, request: gr.Request, key=key):
                if not is_admin(manager.config, request.username):
                    return not_admin_message("change extension settings")
                try:
                    manager.set_setting(name, key, value)
                except RequestError as error:
                    return f"⚠️ {html.escape(str(error))}"
                return f"Saved {html.escape(name)} setting {html.escape(key)}."

            widget.input(on_change, widget, message, queue=False, api_name=False)


def _setting_widget(setting, elem_id: str):
    if setting.choices is not None:
        return gr.Dropdown(list(setting.choices), value=setting.value, label=setting.label, info=setting.info or None,
                           elem_id=elem_id)
    if isinstance(setting.default, bool):
        return gr.Checkbox(value=setting.value, label=setting.label, info=setting.info or None, elem_id=elem_id)
    if isinstance(setting.default, (int, float)):
        return gr.Number(value=setting.value, label=setting.label, info=setting.info or None, minimum=setting.minimum,
                         maximum=setting.maximum, precision=0 if isinstance(setting.default, int) else None,
                         elem_id=elem_id)
    return gr.Textbox(value=setting.value, label=setting.label, info=setting.info or None, elem_id=elem_id)


def load_extensions(config, engine) -> list[tuple[str, Callable]]:
    """Discover and load extensions/<name>/; returns the tabs for build_ui: theirs, then the Extensions tab."""
    manager = ExtensionManager(config, engine).load_all()
    return manager.tabs() + [("Extensions", build(manager))]
