"""The txt2img tab: prompt in, images out, with live previews."""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.adapters_panel import build_controlnet_panel, build_lora_picker, named_unit_parameters
from ldm_ui.ui.common import (
    build_generation_controls, build_output_panel, generation_settings, stream_job, wire_generation,
)
from ldm_ui.ui.hires_panel import build_hires_panel, hires_from_values
from ldm_ui.ui.seed_extras import build_seed_extras, variation_from, wire_seed_buttons
from ldm_ui.ui.styles_panel import build_styles_panel


def to_request(model, preview_method, preview_every, *values, controlnets=(), hires=None,
               variation=None) -> Txt2ImgRequest:
    return Txt2ImgRequest(model=model or None, preview_method=preview_method,
                          preview_every_n_steps=int(preview_every), controlnets=controlnets, hires=hires,
                          variation=variation,
                          **generation_settings(*values))


def build(ui) -> None:
    """ui: the UiContext (engine, shared widgets, send-to targets)."""
    with gr.Row():
        with gr.Column(scale=1):
            controls = build_generation_controls("txt2img", ui.native_size, engine=ui.engine)
            build_styles_panel("txt2img", controls, ui.engine.config.styles_file)
            extras, variation_dice, variation_reuse = build_seed_extras("txt2img")
            ui.seed_extras["txt2img"] = extras
            hires = build_hires_panel("txt2img", ui.engine.upscalers)
            ui.hires_panel = hires  # PNG info's "Send to txt2img" fills it
            build_lora_picker("txt2img", controls.prompt, ui.engine.config)
            controlnet = build_controlnet_panel("txt2img", ui.engine, controls.width, controls.height)
        with gr.Column(scale=1):
            panel = build_output_panel("txt2img")
            with gr.Row():
                send_img2img = gr.Button("Send to img2img", size="sm", elem_id="txt2img-send-img2img")
                send_inpaint = gr.Button("Send to inpaint", size="sm", elem_id="txt2img-send-inpaint")
    ui.register_tab("txt2img", controls, panel, send_buttons={"img2img": send_img2img, "inpaint": send_inpaint})

    @named_unit_parameters
    def txt2img(prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count, batch_size,
                clip_skip, variation_seed, variation_strength, resize_seed_from_width, resize_seed_from_height,
                model, preview_method, preview_every, session, hires_enabled=False,
                hires_upscaler="Latent", hires_scale=2.0, hires_resize_width=0, hires_resize_height=0, hires_steps=0,
                hires_denoising_strength=0.7, hires_sampler=None, hires_prompt="", hires_negative_prompt="",
                *controlnet_values):
        values = (prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count, batch_size,
                  clip_skip)
        extra_seed = (variation_seed, variation_strength, resize_seed_from_width, resize_seed_from_height)
        hires_values = (hires_enabled, hires_upscaler, hires_scale, hires_resize_width, hires_resize_height,
                        hires_steps, hires_denoising_strength, hires_sampler, hires_prompt, hires_negative_prompt)
        yield from stream_job(ui.engine, session, lambda: to_request(
            model, preview_method, preview_every, *values, controlnets=controlnet.units(*controlnet_values),
            hires=hires_from_values(*hires_values), variation=variation_from(*extra_seed)))

    wire_generation(ui, controls, panel, txt2img, [*controls.inputs(), *extras.inputs(), ui.model, ui.preview_method,
                                                   ui.preview_every, ui.session, *hires.inputs(),
                                                   *controlnet.inputs()], "txt2img")
    wire_seed_buttons(panel, extras.variation_seed, variation_dice, variation_reuse, key="Variation seed")
