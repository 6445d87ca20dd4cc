"""The inpaint tab: paint a mask over the image with a brush (or upload one), then repaint inside it."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image, ImageChops

from ldm_ui.images import load_image
from ldm_ui.requests import (
    INPAINT_AREAS, MASKED_CONTENTS, MAX_MASK_BLUR_PX, MAX_MASK_PADDING_PX, RESIZE_MODES, InpaintRequest, RequestError,
)
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, units_from_values
from ldm_ui.ui.common import (
    add_reuse_seed, build_generation_controls, build_output_panel, job_runner, render_status, settings_from,
    wire_generation,
)
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.seed_extras import build_seed_extras, variation_of, wire_seed_buttons
from ldm_ui.ui.img2img import STRENGTH_INFO, size_of_input
from ldm_ui.ui.send_to import wire_target
from ldm_ui.ui.styles_panel import build_styles_panel

EDITOR_HELP = ("Upload an image, then paint over what should change. Pixels outside the painted area (after the "
               "mask blur) come back exactly as they were. The result has the input image's size. *Clear mask* "
               "removes the strokes and keeps the image; the editor's 🗑 removes both.")


def image_and_mask(editor: dict[str, Any] | None, uploaded_mask: Any) -> tuple[Image.Image, Image.Image]:
    """The editor's background, and the mask: an uploaded one if given, else every painted stroke.

    Images arrive as file paths (or PIL images) and are decoded here, so a truncated or oversized upload is
    refused with a message that names it.
    """
    from ldm_ui.images import load_image

    background = (editor or {}).get("background")
    if background is None:
        raise RequestError("no image to inpaint: upload or paste one in the editor, or use 'Send to inpaint'")
    background = load_image(background, "input image")
    if uploaded_mask is not None:
        return background, load_image(uploaded_mask, "mask", mode="RGBA")
    mask = Image.new("L", background.size, 0)
    for layer in (editor or {}).get("layers") or []:
        alpha = load_image(layer, "painted mask layer", mode="RGBA").getchannel("A")
        if alpha.size != background.size:
            alpha = alpha.resize(background.size, Image.Resampling.NEAREST)
        mask = ImageChops.lighter(mask, alpha)
    return background, mask


def image_without_strokes(background):
    """The editor's value for its image with no painted strokes (the editor's own 🗑 clears the image too)."""
    if background is None:
        return gr.skip()
    return {"background": background, "layers": [], "composite": background}


def to_request(*, editor, uploaded_mask, strength, resize_mode, mask_blur, invert_mask, masked_content, inpaint_area,
               padding, model, preview_method, preview_every, **values) -> InpaintRequest:
    """values: the shared generation controls and the ControlNet units, by their InputTable names."""
    image, mask = image_and_mask(editor, uploaded_mask)
    image = load_image(image, "input image") if image is not None else None  # size limit, EXIF, mode -> RGB
    return InpaintRequest(
        model=model or None, preview_method=preview_method, preview_every_n_steps=int(preview_every),
        init_image=image, mask=mask, strength=float(strength), resize_mode=resize_mode,
        mask_blur_px=int(mask_blur), invert_mask=bool(invert_mask), masked_content=masked_content,
        inpaint_area=inpaint_area, only_masked_padding_px=int(padding), controlnets=units_from_values(values),
        variation=variation_of(values), **settings_from(values),
    )


def build(ui) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            editor = gr.ImageEditor(
                label="Image and mask", type="filepath", image_mode="RGBA", format="png", height=420,
                sources=["upload", "clipboard"], layers=False, transforms=(),
                brush=gr.Brush(colors=["#ffffff", "#ff00ff", "#000000"], default_color="#ffffff",
                               color_mode="fixed", default_size=12),
                eraser=gr.Eraser(default_size=12), elem_id="inpaint-editor", elem_classes=["pixelated"],
            )
            with gr.Row(equal_height=True):
                gr.Markdown(EDITOR_HELP)
                clear_mask = gr.Button("Clear mask", size="sm", scale=0, min_width=110, elem_id="inpaint-clear-mask")
            with gr.Accordion("Upload a mask instead (white = repaint)", open=False):
                uploaded_mask = gr.Image(label="Mask", type="filepath", image_mode=None, format="png",
                                         sources=["upload", "clipboard"],
                                         height=200, elem_id="inpaint-mask-upload")
            with gr.Row():
                mask_blur = gr.Slider(0, MAX_MASK_BLUR_PX, value=4, step=1, label="Mask blur (px)",
                                      elem_id="inpaint-mask-blur")
                invert_mask = gr.Checkbox(False, label="Invert mask (repaint what is not painted)",
                                          elem_id="inpaint-invert")
            masked_content = gr.Radio(list(MASKED_CONTENTS), value="original", label="Masked content",
                                      info="what the masked area starts from", elem_id="inpaint-masked-content")
            with gr.Row():
                inpaint_area = gr.Radio(list(INPAINT_AREAS), value="whole picture", label="Inpaint area",
                                        info="only masked: crop around the mask, work at width x height, paste back",
                                        elem_id="inpaint-area")
                padding = gr.Slider(0, MAX_MASK_PADDING_PX, value=32, step=4, label="Only masked padding (px)",
                                    elem_id="inpaint-padding")
            with gr.Row():
                strength = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                     info=STRENGTH_INFO, elem_id="inpaint-strength")
                resize_mode = gr.Radio(list(RESIZE_MODES), value="just resize", label="Resize mode",
                                       elem_id="inpaint-resize-mode")
            controls = build_generation_controls("inpaint", ui.native_size, generate_label="Inpaint",
                                                 engine=ui.engine)
            build_styles_panel("inpaint", controls, ui.engine.config.styles_file)
            extras, variation_dice, variation_reuse = build_seed_extras("inpaint")
            ui.seed_extras["inpaint"] = extras
            build_lora_picker("inpaint", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("inpaint", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("inpaint")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="inpaint-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="inpaint-send-inpaint")
                add_reuse_seed("inpaint", controls, panel)
    ui.register_tab("inpaint", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})
    ui.family_accordions["inpaint"] = {"controlnet": controlnet.accordion, "seed_extras": extras.accordion}

    table = InputTable([("editor", editor), ("uploaded_mask", uploaded_mask), ("strength", strength),
                        ("resize_mode", resize_mode), ("mask_blur", mask_blur), ("invert_mask", invert_mask),
                        ("masked_content", masked_content), ("inpaint_area", inpaint_area), ("padding", padding)],
                       controls.fields(), ui.shared_fields(), controlnet.fields(), extras.optional_fields())
    wire_generation(ui, "inpaint", controls, panel, table, job_runner(ui, "inpaint", to_request), "inpaint")
    wire_seed_buttons(panel, extras.variation_seed, variation_dice, variation_reuse, key="Variation seed")
    # the editor redraws only on a new value: empty it, then give the image back without the strokes
    kept_image = gr.State(None)
    clear_mask.click(lambda value: ((value or {}).get("background"), None), editor, [kept_image, editor], queue=False,
                     api_visibility="private", show_progress="hidden").then(
        image_without_strokes, kept_image, editor, queue=False, api_visibility="private", show_progress="hidden").then(
        lambda image: render_status("Mask cleared; the image stays." if image else "There is no mask to clear."),
        kept_image, panel.status, queue=False, api_visibility="private", show_progress="hidden")
    editor.upload(lambda value: size_of_input((value or {}).get("background")), editor,
                  [controls.width, controls.height], queue=False, api_visibility="private")
    ui.after_build.append(lambda ui: wire_target(ui, "inpaint", editor, controls, panel.status))
