"""The txt2img tab: prompt in, images out, with live previews."""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, named_unit_parameters
from ldm_ui.ui.common import (
    build_generation_controls, build_output_panel, generation_settings, stream_job, wire_generation,
)
from ldm_ui.ui.hires_panel import build_hires_panel, hires_from_values


def to_request(model, preview_method, preview_every, *values, controlnets=(), hires=None) -> Txt2ImgRequest:
    return Txt2ImgRequest(model=model or None, preview_method=preview_method,
                          preview_every_n_steps=int(preview_every), controlnets=controlnets, hires=hires,
                          **generation_settings(*values))


def build(ui) -> None:
    """ui: the UiContext (engine, shared widgets, send-to targets)."""
    with gr.Row():
        with gr.Column(scale=1):
            controls = build_generation_controls("txt2img", ui.native_size, engine=ui.engine)
            hires = build_hires_panel("txt2img", ui.engine.upscalers)
            ui.hires_panel = hires  # PNG info's "Send to txt2img" fills it
            build_lora_picker("txt2img", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("txt2img", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("txt2img")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="txt2img-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="txt2img-send-inpaint")
                reuse_seed = gr.Button("♻ Reuse seed", size="sm", elem_id="txt2img-reuse-seed")
    ui.register_tab("txt2img", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})

    @named_unit_parameters
    def txt2img(prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count, batch_size,
                clip_skip, model, preview_method, preview_every, session, hires_enabled=False,
                hires_upscaler="Latent", hires_scale=2.0, hires_resize_width=0, hires_resize_height=0, hires_steps=0,
                hires_denoising_strength=0.7, hires_sampler=None, hires_prompt="", hires_negative_prompt="",
                *controlnet_values):
        values = (prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count, batch_size,
                  clip_skip)
        hires_values = (hires_enabled, hires_upscaler, hires_scale, hires_resize_width, hires_resize_height,
                        hires_steps, hires_denoising_strength, hires_sampler, hires_prompt, hires_negative_prompt)
        yield from stream_job(ui.engine, session, lambda: to_request(
            model, preview_method, preview_every, *values, controlnets=controlnet.units(*controlnet_values),
            hires=hires_from_values(*hires_values)))

    wire_generation(ui, controls, panel, txt2img, [*controls.inputs(), ui.model, ui.preview_method,
                                                   ui.preview_every, ui.session, *hires.inputs(),
                                                   *controlnet.inputs()], "txt2img")
    reuse_seed.click(lambda outputs: outputs[-1].seed if outputs else -1, panel.outputs_state, controls.seed,
                     queue=False, api_name=False)
