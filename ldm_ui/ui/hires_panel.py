"""The txt2img "Hires. fix" accordion: its widgets, declared once, and the HiresFix they make."""

from __future__ import annotations

from dataclasses import dataclass, fields

import gradio as gr

from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.ui.inputs import Input
from ldm_ui.requests import MAX_HIRES_SCALE, MAX_SIZE, MAX_STEPS, HiresFix, RequestError

SAME_SAMPLER = "Use same sampler"
# API parameter name -> default, in the order of HiresPanel.inputs(); scripts may leave them all out
API_DEFAULTS = (("hires_enabled", False), ("hires_upscaler", "Latent"), ("hires_scale", 2.0),
                ("hires_resize_width", 0), ("hires_resize_height", 0), ("hires_steps", 0),
                ("hires_denoising_strength", 0.7), ("hires_sampler", SAME_SAMPLER), ("hires_prompt", ""),
                ("hires_negative_prompt", ""))


@dataclass
class HiresPanel:
    enabled: gr.Checkbox
    upscaler: gr.Dropdown
    scale: gr.Slider
    resize_width: gr.Slider
    resize_height: gr.Slider
    steps: gr.Slider
    denoising_strength: gr.Slider
    sampler: gr.Dropdown
    prompt: gr.Textbox
    negative_prompt: gr.Textbox

    def inputs(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]

    def fields(self) -> list:
        """InputTable rows: (public API name, widget, default); scripts may leave them all out."""
        return [Input(name, widget, default) for (name, default), widget in zip(API_DEFAULTS, self.inputs())]


def hires_of(values: dict) -> HiresFix | None:
    """`hires_from_values` of the HiresPanel rows in a tab's values dict."""
    return hires_from_values(*(values[name] for name, _default in API_DEFAULTS))


def upscaler_library(engine):
    """The engine's UpscalerLibrary for the pickers' names. Engine replicas on Ray (--backend ray) keep theirs in
    the replicas: the front lists the same folders with its own library, which loads nothing unless used."""
    library = getattr(engine, "upscalers", None)
    if library is None:
        from ldm_ui.engine.upscalers import UpscalerLibrary

        return UpscalerLibrary(engine.config)
    return library


def build_hires_panel(tab: str, upscalers) -> HiresPanel:
    """upscalers: the engine's UpscalerLibrary (for the dropdown's names)."""
    with gr.Accordion("Hires. fix", open=False, elem_id=f"{tab}-hires"):
        enabled = gr.Checkbox(False, label="Enable hires fix: a second pass at a larger size",
                              elem_id=f"{tab}-hires-enabled")
        with gr.Row():
            upscaler = gr.Dropdown(upscalers.hires_upscalers(), value="Latent", label="Upscaler", allow_custom_value=True,
                                   elem_id=f"{tab}-hires-upscaler", scale=3)
            refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id=f"{tab}-hires-refresh")
            steps = gr.Slider(0, MAX_STEPS, value=0, step=1, label="Hires steps (0 = same as sampling steps)",
                              elem_id=f"{tab}-hires-steps", scale=3)
            denoising = gr.Slider(0, 1, value=0.7, step=0.01, label="Denoising strength",
                                  elem_id=f"{tab}-hires-denoising", scale=3)
        with gr.Row():
            scale = gr.Slider(1, MAX_HIRES_SCALE, value=2.0, step=0.05, label="Upscale by",
                              elem_id=f"{tab}-hires-scale")
            width = gr.Slider(0, MAX_SIZE, value=0, step=8, label="Resize width to (0 = from upscale by)",
                              elem_id=f"{tab}-hires-width")
            height = gr.Slider(0, MAX_SIZE, value=0, step=8, label="Resize height to (0 = from upscale by)",
                               elem_id=f"{tab}-hires-height")
        sampler = gr.Dropdown([SAME_SAMPLER, *SAMPLER_NAMES], value=SAME_SAMPLER, label="Hires sampler",
                              elem_id=f"{tab}-hires-sampler")
        prompt = gr.Textbox("", label="Hires prompt (empty = the same prompt)", lines=2,
                            elem_id=f"{tab}-hires-prompt")
        negative = gr.Textbox("", label="Hires negative prompt (empty = the same)", lines=2,
                              elem_id=f"{tab}-hires-negative-prompt")
    refresh.click(lambda: gr.update(choices=upscalers.hires_upscalers()), None, upscaler, queue=False,
                  api_visibility="private")
    return HiresPanel(enabled, upscaler, scale, width, height, steps, denoising, sampler, prompt, negative)


def hires_from_values(enabled, upscaler, scale, resize_width, resize_height, steps, denoising_strength, sampler,
                      prompt, negative_prompt) -> HiresFix | None:
    """Widget values (in HiresPanel.inputs() order) -> the HiresFix, or None when the accordion is off."""
    if not enabled:
        return None
    whole = {}
    for name, value in (("hires resize width", resize_width), ("hires resize height", resize_height),
                        ("hires steps", steps)):
        try:
            whole[name] = int(float(value or 0))
        except (TypeError, ValueError):
            raise RequestError(f"{name} must be a whole number, got {value!r}") from None
    return HiresFix(upscaler=upscaler or "", scale=float(scale), resize_width=whole["hires resize width"],
                    resize_height=whole["hires resize height"], steps=whole["hires steps"],
                    denoising_strength=float(denoising_strength),
                    sampler=None if sampler in (None, "", SAME_SAMPLER) else sampler,
                    prompt=prompt or "", negative_prompt=negative_prompt or "")


def hires_updates(hires: HiresFix | None) -> list:
    """Updates for HiresPanel.inputs() that show `hires` (PNG info's "Send to txt2img"); None leaves them."""
    if hires is None:
        return [gr.skip()] * len(API_DEFAULTS)
    return [True, hires.upscaler, hires.scale, hires.resize_width, hires.resize_height, hires.steps,
            hires.denoising_strength, hires.sampler or SAME_SAMPLER, hires.prompt, hires.negative_prompt]
