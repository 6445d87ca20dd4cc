"""The styles picker under a tab's prompt: pick styles, apply them to the prompt, save the prompt as a style.

Styles picked but not applied are applied when Generate is clicked, just before the job is made: the prompt boxes
then show the final prompt (which the infotext records, as AUTOMATIC1111's does) and the picker empties, so a
second click does not apply them twice.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from ldm_ui.styles import Style, StyleError, apply_styles, load_styles, save_style

SAVE_INFO = "Saves the prompt and negative prompt as they are now; write {prompt} where a user's prompt goes."


def style_names(path: Path) -> list[str]:
    return list(load_styles(path).styles)


def skipped_note(path: Path) -> str:
    skipped = load_styles(path).skipped
    return "".join(f"⚠️ {html.escape(message)}  \n" for message in skipped)


def apply_picked(path: Path, prompt: str, negative: str, picked: list[str] | None):
    """(prompt, negative, picker, note) with the picked styles merged in; unknown names are reported, not applied."""
    picked = picked or []
    if not picked:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    styles = load_styles(path).styles
    missing = [name for name in picked if name not in styles]
    prompt, negative = apply_styles(prompt or "", negative or "", [styles[n] for n in picked if n in styles])
    note = f"⚠️ no style named {', '.join(map(repr, missing))} in {path.name} any more" if missing else ""
    return prompt, negative, [], note


def save_current(path: Path, name: str, prompt: str, negative: str):
    try:
        save_style(path, Style((name or "").strip(), prompt or "", negative or ""))
    except (StyleError, OSError) as error:
        return gr.skip(), f"⚠️ Could not save the style: {error}"
    return gr.update(choices=style_names(path)), f"Saved style **{html.escape(name.strip())}** to `{path}`."


def build_styles_panel(tab: str, controls, path: Path) -> gr.Dropdown:
    """The picker and its buttons, under the prompt; sets `controls.styles` so Generate applies picked styles."""
    with gr.Accordion("Styles", open=False, elem_id=f"{tab}-styles"):
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(style_names(path), value=[], multiselect=True, label="Styles", scale=4,
                                 elem_id=f"{tab}-styles-picker")
            apply = gr.Button("Apply styles to prompt", size="sm", scale=1, elem_id=f"{tab}-styles-apply")
            refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id=f"{tab}-styles-refresh")
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Save current prompt as style", placeholder="style name", info=SAVE_INFO,
                              scale=4, elem_id=f"{tab}-styles-name")
            save = gr.Button("Save style", size="sm", scale=1, elem_id=f"{tab}-styles-save")
        note = gr.Markdown(skipped_note(path), elem_id=f"{tab}-styles-note")
    apply.click(lambda p, n, s: apply_picked(path, p, n, s), [controls.prompt, controls.negative_prompt, picker],
                [controls.prompt, controls.negative_prompt, picker, note], queue=False, api_visibility="private")
    save.click(lambda n, p, neg: save_current(path, n, p, neg), [name, controls.prompt, controls.negative_prompt],
               [picker, note], queue=False, api_visibility="private")
    refresh.click(lambda: (gr.update(choices=style_names(path)), skipped_note(path)), None, [picker, note],
                  queue=False, api_visibility="private")
    controls.styles = picker
    controls.styles_file = path
    return picker
