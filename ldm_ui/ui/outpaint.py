"""The Outpaint tab: extend an image beyond its borders; the new area (plus an overlap) is inpainted."""

from __future__ import annotations

import gradio as gr

from ldm_ui.images import load_image
from ldm_ui.requests import (
    MAX_MASK_BLUR_PX, MAX_OUTPAINT_OVERLAP_PX, MAX_OUTPAINT_PX, OUTPAINT_FILLS, OutpaintRequest, RequestError,
)
from ldm_ui.ui.common import build_generation_controls, build_output_panel, job_runner, settings_from, wire_generation
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.send_to import wire_target

HELP = ("Extend the image by the pixels set for each side. The new area starts from the fill and is painted to "
        "match the prompt; pixels of the original further than the overlap from a new edge stay exactly as they "
        "were. The result is the extended size.")
SIDES = ("left", "right", "up", "down")


def to_request(*, model, preview_method, preview_every, image, left, right, up, down, fill, overlap, mask_blur,
               strength, **values) -> OutpaintRequest:
    """values: the shared generation controls, by their InputTable names."""
    if image is None:
        raise RequestError("no image to outpaint: upload or paste one, or use 'Send to outpaint'")
    settings = settings_from(values)
    settings.pop("width"), settings.pop("height")  # the result has the extended canvas' size
    return OutpaintRequest(model=model or None, preview_method=preview_method,
                           preview_every_n_steps=int(preview_every), init_image=load_image(image, "input image"),
                           left=int(left), right=int(right), up=int(up), down=int(down), fill=fill,
                           overlap_px=int(overlap), mask_blur_px=int(mask_blur), strength=float(strength),
                           **settings)


def build(ui) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             height=300, elem_id="outpaint-image")
            gr.Markdown(HELP)
            with gr.Row():
                sides = {side: gr.Slider(0, MAX_OUTPAINT_PX, value=64 if side == "right" else 0, step=8,
                                         label=f"Extend {side} (px)", elem_id=f"outpaint-{side}")
                         for side in SIDES}
            fill = gr.Radio(list(OUTPAINT_FILLS), value=OUTPAINT_FILLS[0], label="Fill of the new area",
                            elem_id="outpaint-fill")
            with gr.Row():
                overlap = gr.Slider(0, MAX_OUTPAINT_OVERLAP_PX, value=16, step=1, label="Overlap into the image (px)",
                                    elem_id="outpaint-overlap")
                mask_blur = gr.Slider(0, MAX_MASK_BLUR_PX, value=4, step=1,
                                      label="Mask blur (px, kept inside the overlap)", elem_id="outpaint-mask-blur")
                strength = gr.Slider(0.0, 1.0, value=0.9, step=0.01, label="Denoising strength",
                                     elem_id="outpaint-strength")
            controls = build_generation_controls("outpaint", ui.native_size, generate_label="Outpaint")
            controls.width.visible = controls.height.visible = False  # the canvas' own size is used
        with gr.Column(scale=1):
            panel = build_output_panel("outpaint")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="outpaint-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="outpaint-send-inpaint")
    ui.register_tab("outpaint", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})

    table = InputTable([("image", image), *sides.items(), ("fill", fill), ("overlap", overlap),
                        ("mask_blur", mask_blur), ("strength", strength)], controls.fields(), ui.shared_fields())
    wire_generation(ui, "outpaint", controls, panel, table, job_runner(ui, "outpaint", to_request), "outpaint")
    ui.after_build.append(lambda ui: wire_target(ui, "outpaint", image, controls, panel.status))
