"""The txt2img tab: prompt in, images out, with live previews."""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, units_from_values
from ldm_ui.ui.common import (
    add_reuse_seed, build_generation_controls, build_output_panel, job_runner, settings_from, wire_generation,
)
from ldm_ui.ui.hires_panel import build_hires_panel, hires_of, upscaler_library
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.refiner_panel import build_refiner_panel, refiner_of
from ldm_ui.ui.seed_extras import build_seed_extras, variation_of, wire_seed_buttons
from ldm_ui.ui.styles_panel import build_styles_panel


def to_request(*, model, preview_method, preview_every, **values) -> Txt2ImgRequest:
    """values: the shared generation controls, the variation seed, the hires fix, the ControlNet units and the
    refiner, by their InputTable names."""
    return Txt2ImgRequest(model=model or None, preview_method=preview_method,
                          preview_every_n_steps=int(preview_every), controlnets=units_from_values(values),
                          hires=hires_of(values), variation=variation_of(values), refiner=refiner_of(values),
                          **settings_from(values))


def build(ui) -> None:
    """ui: the UiContext (engine, shared widgets, send-to targets)."""
    with gr.Row():
        with gr.Column(scale=1):
            controls = build_generation_controls("txt2img", ui.native_size, engine=ui.engine)
            build_styles_panel("txt2img", controls, ui.engine.config.styles_file)
            extras, variation_dice, variation_reuse = build_seed_extras("txt2img")
            ui.seed_extras["txt2img"] = extras
            hires = build_hires_panel("txt2img", upscaler_library(ui.engine))
            ui.hires_panel = hires  # PNG info's "Send to txt2img" fills it
            refiner = build_refiner_panel("txt2img", ui.engine)
            ui.refiner_panels["txt2img"] = refiner
            build_lora_picker("txt2img", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("txt2img", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("txt2img")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="txt2img-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="txt2img-send-inpaint")
                add_reuse_seed("txt2img", controls, panel)
    ui.register_tab("txt2img", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})
    ui.family_accordions["txt2img"] = {"controlnet": controlnet.accordion, "seed_extras": extras.accordion}

    table = InputTable(controls.fields(), extras.fields(), ui.shared_fields(), hires.fields(), controlnet.fields(),
                       refiner.fields())
    wire_generation(ui, "txt2img", controls, panel, table, job_runner(ui, "txt2img", to_request), "txt2img")
    wire_seed_buttons(panel, extras.variation_seed, variation_dice, variation_reuse, key="Variation seed")
