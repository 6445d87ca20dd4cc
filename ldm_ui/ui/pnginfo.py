"""The PNG info tab: drop a PNG, read its `parameters` infotext, and send the settings to a generation tab.

Reads ours, AUTOMATIC1111's, and any tool's PNG that writes the `parameters` text chunk (and A1111's JPEG and
WebP files, which keep the same text in the EXIF UserComment). Every setting is
shown, including keys ldm-ui does not use; "Send to" fills the target tab's prompt (LoRA tags included),
negative prompt, sampler, steps, CFG, size and seed (and the hires fix, variation seed and refiner where the tab has
them), and switches to that tab.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr
from PIL import Image, UnidentifiedImageError

from ldm_ui.images import ImageUploadError, check_image_file
from ldm_ui.metadata import WIDGET_KEYS, generation_fields, parse_infotext, read_infotext
from ldm_ui.requests import MAX_SIZE, MIN_SIZE
from ldm_ui.ui.hires_panel import hires_updates
from ldm_ui.ui.refiner_panel import refiner_updates

log = logging.getLogger(__name__)

SEND_TARGETS = ("txt2img", "img2img", "inpaint")
NO_METADATA = "This image has no generation parameters (no PNG `parameters` text chunk, no EXIF UserComment), so there is nothing to read."


def read_parameters(path: str | None) -> tuple[str | None, str]:
    """(infotext or None, a message for the user) for the image file at `path`."""
    if not path:
        return None, ""
    try:
        check_image_file(path, "image")  # the pixels are decoded below: refuse a bomb from its header first
        with Image.open(path) as image:
            image.load()  # text chunks after the image data are read only once the pixels are
            text = read_infotext(image)
    except ImageUploadError as error:
        return None, f"⚠️ Could not read this file as an image: {error}"
    except (UnidentifiedImageError, OSError) as error:
        return None, f"⚠️ Could not read this file as an image: {error}"
    if not text or not text.strip():
        return None, NO_METADATA
    return text, ""


def render_parameters(text: str) -> str:
    """HTML: prompt, negative prompt, the settings 'Send to' fills in, then those it only shows (model, hashes,
    anything another app wrote), under their own heading rather than a mark on each name."""
    info = parse_infotext(text)
    fields, notes = generation_fields(info)
    applied, shown_only = [], []
    for key, value in info.settings.items():
        row = (f'<tr data-key="{html.escape(key)}"><th>{html.escape(key)}</th>'
               f"<td>{html.escape(value)}</td></tr>")
        (applied if key in WIDGET_KEYS else shown_only).append(row)
    negative = info.negative_prompt or "(none)"
    note_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return (
        '<div class="ldm-pnginfo">'
        f'<h4>Prompt</h4><pre id="pnginfo-prompt-text">{html.escape(info.prompt) or "(empty)"}</pre>'
        f'<h4>Negative prompt</h4><pre id="pnginfo-negative-text">{html.escape(negative)}</pre>'
        f'<h4>Settings</h4><table class="ldm-pnginfo-settings" id="pnginfo-applied">{"".join(applied)}</table>'
        + (f'<h4>Also recorded</h4><p class="ldm-pnginfo-kept-help">Shown for reference; <em>Send to</em> does not '
           f'apply these.</p><table class="ldm-pnginfo-settings" id="pnginfo-shown-only">{"".join(shown_only)}'
           "</table>" if shown_only else "")
        + (f"<ul class='ldm-pnginfo-notes'>{note_html}</ul>" if note_html else "")
        + "</div>"
    )


def send_updates(text: str | None, current_prompt: str) -> tuple[list, str]:
    """Updates for [prompt, negative, sampler, steps, cfg, width, height, seed, clip skip] and a status note."""
    keep = gr.skip()
    if not text:
        return [keep] * 9, "Drop a PNG with generation parameters first."
    fields, notes = generation_fields(parse_infotext(text))
    for key in ("width", "height"):
        if key in fields and not (MIN_SIZE <= fields[key] <= MAX_SIZE and fields[key] % 8 == 0):
            notes.append(f"{key} {fields[key]} is outside {MIN_SIZE}-{MAX_SIZE} (multiples of 8); left unchanged")
            fields.pop(key)
    updates = [fields.get(k, keep) for k in ("prompt", "negative_prompt", "sampler", "steps", "cfg_scale",
                                              "width", "height", "seed", "clip_skip")]
    return updates, "; ".join(notes)


def seed_extra_updates(text: str | None) -> list:
    """Updates for [variation seed, variation strength, resize seed from width, height]: an infotext without
    them had no variation, so strength and resize go back to off; the variation seed box keeps its value."""
    if not text:
        return [gr.skip()] * 4
    fields, _ = generation_fields(parse_infotext(text))
    return [fields.get("variation_seed", gr.skip()), fields.get("variation_strength", 0.0),
            fields.get("resize_from_width", 0), fields.get("resize_from_height", 0)]


def build(ui) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Drop a PNG here", type="filepath", image_mode=None,
                             sources=["upload", "clipboard"], elem_id="pnginfo-image", height=400,
                             elem_classes=["pixelated", "ldm-fill"])
        with gr.Column(scale=1):
            result = gr.HTML("Drop a PNG to see how it was made.", elem_id="pnginfo-result")
            raw = gr.Textbox(label="Raw parameters", lines=4, interactive=False, elem_id="pnginfo-raw")
            send_row = gr.Row()  # filled once every generation tab exists (see wire_send_buttons)
            send_status = gr.Markdown("", elem_id="pnginfo-send-status")

    def read(path):
        text, message = read_parameters(path)
        if text is None:
            return message or "Drop a PNG to see how it was made.", ""
        log.info("PNG info: read %d characters of parameters", len(text))
        return render_parameters(text), text

    image.change(read, image, [result, raw], queue=False, api_name="pnginfo")
    # queued behind every other finisher: img2img and inpaint register their image inputs in theirs
    ui.after_build.append(
        lambda ui: ui.after_build.append(lambda ui: wire_send_buttons(ui, send_row, image, raw, send_status)))


def wire_send_buttons(ui, send_row: gr.Row, image, raw: gr.Textbox, send_status: gr.Markdown,
                      source: str = "pnginfo") -> None:
    """One 'Send to' button per generation tab that exists (txt2img; img2img and inpaint when present).

    img2img and inpaint also receive the dropped image itself, as A1111 users expect.
    """
    with send_row:
        for target in SEND_TARGETS:
            if target not in ui.tabs:
                continue
            controls, _panel = ui.tabs[target]
            button = gr.Button(f"Send to {target}", size="sm", elem_id=f"{source}-send-{target}")
            outputs = [controls.prompt, controls.negative_prompt, controls.sampler, controls.steps,
                       controls.cfg_scale, controls.width, controls.height, controls.seed, controls.clip_skip]
            extras = ui.seed_extras.get(target)
            if extras is not None:
                outputs.extend(extras.inputs())
            image_input = ui.image_inputs.get(target)
            if image_input is not None:
                outputs.append(image_input)
            hires = ui.hires_panel if target == "txt2img" else None
            if hires is not None:
                outputs.extend(hires.inputs())
            refiner = ui.refiner_panels.get(target)
            if refiner is not None:
                outputs.extend(refiner.inputs())

            def send(text: str, prompt: str, path: str | None, target: str = target,
                     with_image: bool = image_input is not None, with_hires: bool = hires is not None,
                     with_extras: bool = extras is not None, with_refiner: bool = refiner is not None) -> list[Any]:
                updates, note = send_updates(text, prompt)
                if with_extras:
                    updates.extend(seed_extra_updates(text))
                if with_image:
                    updates.append(path if path else gr.skip())
                if with_hires:  # the accordion shows the image's hires fix; one without leaves it as it is
                    updates.extend(hires_updates(generation_fields(parse_infotext(text))[0].get("hires")
                                                 if text else None))
                if with_refiner:  # the image's refiner, or None when it had none
                    updates.extend(refiner_updates(generation_fields(parse_infotext(text))[0] if text else None,
                                                   ui.engine))
                if not text:
                    return updates + [gr.skip(), note]
                return updates + [gr.Tabs(selected=_tab_id(ui, target)), note]

            button.click(send, [raw, controls.prompt, image], [*outputs, ui.tab_group, send_status], queue=False,
                         api_name=False)


def _tab_id(ui, name: str) -> str:
    return name.lower().replace(" ", "-")
