"""The txt2img tab: prompt in, images out, with live previews."""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, units_from_values
from ldm_ui.ui.common import (
    add_reuse_seed, build_generation_controls, build_output_panel, job_runner, settings_from, wire_generation,
)
from ldm_ui.ui.inputs import InputTable


def to_request(*, model, preview_method, preview_every, **values) -> Txt2ImgRequest:
    """values: the shared generation controls and the ControlNet units, by their InputTable names."""
    return Txt2ImgRequest(model=model or None, preview_method=preview_method,
                          preview_every_n_steps=int(preview_every), controlnets=units_from_values(values),
                          **settings_from(values))


def build(ui) -> None:
    """ui: the UiContext (engine, shared widgets, send-to targets)."""
    with gr.Row():
        with gr.Column(scale=1):
            controls = build_generation_controls("txt2img", ui.native_size)
            build_lora_picker("txt2img", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("txt2img", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("txt2img")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="txt2img-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="txt2img-send-inpaint")
                add_reuse_seed("txt2img", controls, panel)
    ui.register_tab("txt2img", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})

    table = InputTable(controls.fields(), ui.shared_fields(), controlnet.fields())
    wire_generation(ui, "txt2img", controls, panel, table, job_runner(ui, "txt2img", to_request), "txt2img")
