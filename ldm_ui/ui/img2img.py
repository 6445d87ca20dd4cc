"""The img2img tab (SDEdit): an input image, a denoising strength, and the txt2img controls."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from ldm_ui.image_ops import size_for_image
from ldm_ui.images import load_image
from ldm_ui.requests import RESIZE_MODES, Img2ImgRequest, RequestError
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, units_from_values
from ldm_ui.ui.common import (
    add_reuse_seed, build_generation_controls, build_output_panel, job_runner, settings_from, wire_generation,
)
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.refiner_panel import build_refiner_panel, refiner_of
from ldm_ui.ui.seed_extras import build_seed_extras, variation_of, wire_seed_buttons
from ldm_ui.ui.send_to import wire_target
from ldm_ui.ui.styles_panel import build_styles_panel

STRENGTH_INFO = "0 returns the input (through the VAE); 1 ignores it. Steps run = steps x strength."
RESIZE_INFO = "When the input's shape differs from width x height: stretch it, crop it to cover, or fit it and " \
              "extend its edges."


def to_request(*, init_image, strength, resize_mode, model, preview_method, preview_every,
               **values) -> Img2ImgRequest:
    """values: the shared generation controls, the ControlNet units, the variation seed and the refiner, by their
    InputTable names."""
    if init_image is None:
        raise RequestError("no input image: upload or paste one, or use 'Send to img2img' from a result")
    init_image = load_image(init_image, "input image")  # size limit, EXIF rotation, any mode -> RGB
    return Img2ImgRequest(model=model or None, preview_method=preview_method,
                          preview_every_n_steps=int(preview_every), init_image=init_image,
                          strength=float(strength), resize_mode=resize_mode, variation=variation_of(values),
                          refiner=refiner_of(values), controlnets=units_from_values(values), **settings_from(values))


def size_of_input(image):
    """Width/height sliders follow a new input image (its size in multiples of 8); a path is read lazily."""
    if image is None:
        return gr.skip(), gr.skip()
    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:  # the header only: size without decoding
                return size_for_image(opened)
        except OSError:
            return gr.skip(), gr.skip()
    return size_for_image(image)


def build(ui) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            # a file path, decoded by load_image: a truncated or oversized upload gets our message, not Gradio's
            init_image = gr.Image(label="Input image", type="filepath", image_mode=None, format="png", height=320,
                                  sources=["upload", "clipboard"], elem_id="img2img-image",
                                  elem_classes=["pixelated", "ldm-fill"])
            with gr.Row():
                strength = gr.Slider(0.0, 1.0, value=0.75, step=0.01, label="Denoising strength",
                                     info=STRENGTH_INFO, elem_id="img2img-strength")
                resize_mode = gr.Radio(list(RESIZE_MODES), value="just resize", label="Resize mode",
                                       info=RESIZE_INFO, elem_id="img2img-resize-mode")
            controls = build_generation_controls("img2img", ui.native_size, engine=ui.engine)
            build_styles_panel("img2img", controls, ui.engine.config.styles_file)
            extras, variation_dice, variation_reuse = build_seed_extras("img2img")
            ui.seed_extras["img2img"] = extras
            refiner = build_refiner_panel("img2img", ui.engine)
            ui.refiner_panels["img2img"] = refiner
            build_lora_picker("img2img", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("img2img", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("img2img")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="img2img-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="img2img-send-inpaint")
                add_reuse_seed("img2img", controls, panel)
    ui.register_tab("img2img", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})
    ui.family_accordions["img2img"] = {"controlnet": controlnet.accordion, "seed_extras": extras.accordion}

    table = InputTable([("init_image", init_image), ("strength", strength), ("resize_mode", resize_mode)],
                       controls.fields(), ui.shared_fields(), controlnet.fields(), extras.optional_fields(),
                       refiner.fields())
    wire_generation(ui, "img2img", controls, panel, table, job_runner(ui, "img2img", to_request), "img2img")
    wire_seed_buttons(panel, extras.variation_seed, variation_dice, variation_reuse, key="Variation seed")
    init_image.change(size_of_input, init_image, [controls.width, controls.height], queue=False,
                      api_visibility="private")
    ui.after_build.append(lambda ui: wire_target(ui, "img2img", init_image, controls, panel.status))
