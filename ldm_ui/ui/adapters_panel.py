"""LoRA picker and ControlNet units for any generation tab (txt2img, img2img, inpaint).

    lora = build_lora_picker("img2img", controls.prompt, ui.engine.config)
    controlnet = build_controlnet_panel("img2img", ui.engine, controls.width, controls.height)
    # the tab's InputTable gets controlnet.fields(); its to_request: controlnets=controlnet.units(values)
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ldm_ui.engine.controlnet import list_controlnets
from ldm_ui.engine.lora import list_loras, lora_tag
from ldm_ui.engine.preprocessors import CANNY_HIGH, CANNY_LOW, PREPROCESSOR_NAMES, describe
from ldm_ui.images import load_image
from ldm_ui.requests import MAX_CONTROL_WEIGHT, MAX_CONTROLNET_UNITS, ControlMapRequest, ControlNetUnit, RequestError
from ldm_ui.ui.inputs import Input



def lora_names(config) -> list[str]:
    return [entry.name for entry in list_loras(config)]


def controlnet_names(config) -> list[str]:
    return [entry.name for entry in list_controlnets(config)]


def insert_lora_tag(prompt: str | None, name: str | None, weight: float) -> str:
    """The prompt with `<lora:name:weight>` appended, or that tag's weight updated if the LoRA is already in it."""
    import re

    prompt = prompt or ""
    if not name:
        return prompt
    tag = lora_tag(name, float(weight))
    existing = re.compile(r"<lora:" + re.escape(name) + r"(?::[^<>]*)?>", re.IGNORECASE)
    if existing.search(prompt):
        return existing.sub(tag, prompt, count=1)
    return f"{prompt.rstrip()} {tag}".strip()


def build_lora_picker(tab: str, prompt: gr.Textbox, config) -> gr.Dropdown:
    names = lora_names(config)
    with gr.Accordion("LoRA", open=False, elem_id=f"{tab}-lora-accordion"):
        with gr.Row(equal_height=True):
            choice = gr.Dropdown(names, value=names[0] if names else None, label="LoRA", scale=3,
                                 elem_id=f"{tab}-lora-name",
                                 info="adds <lora:name:weight> to the prompt; edit the number there to change it")
            weight = gr.Slider(-2, 2, value=1.0, step=0.05, label="Weight", scale=2, elem_id=f"{tab}-lora-weight")
        with gr.Row():
            insert = gr.Button("Add to prompt", size="sm", elem_id=f"{tab}-lora-insert")
            refresh = gr.Button("↻ Refresh list", size="sm", elem_id=f"{tab}-lora-refresh")
    insert.click(insert_lora_tag, [prompt, choice, weight], prompt, queue=False, api_name=False)
    refresh.click(lambda: gr.update(choices=lora_names(config)), None, choice, queue=False, api_name=False)
    return choice


# a unit's inputs, once: (name, API default); the public API calls them controlnet1_enabled, controlnet1_image, ...
UNIT_FIELDS = (("enabled", False), ("image", None), ("preprocessor", "canny"), ("model", None), ("weight", 1.0),
               ("guidance_start", 0.0), ("guidance_end", 1.0), ("canny_low", CANNY_LOW), ("canny_high", CANNY_HIGH))


def unit_key(index: int, name: str) -> str:
    return f"controlnet{index + 1}_{name}"


@dataclass
class ControlNetPanel:
    units_widgets: list[dict[str, gr.components.Component]]  # per unit: UNIT_FIELDS name -> widget
    accordion: gr.Accordion | None = None  # the whole panel, hidden for a family without ControlNet

    def fields(self) -> list[Input]:
        """InputTable rows for every unit, with API defaults so a script can leave ControlNet out."""
        return [Input(unit_key(index, name), widgets[name], default)
                for index, widgets in enumerate(self.units_widgets) for name, default in UNIT_FIELDS]

    def units(self, values: dict) -> tuple[ControlNetUnit, ...]:
        return units_from_values(values, len(self.units_widgets))


def units_from_values(values: dict, count: int = MAX_CONTROLNET_UNITS) -> tuple[ControlNetUnit, ...]:
    """A tab's values (controlnet1_enabled, controlnet1_image, ...) -> the enabled units, validated."""
    units = []
    for index in range(count):
        if not values[unit_key(index, "enabled")]:
            continue
        unit = {name: values[unit_key(index, name)] for name, _default in UNIT_FIELDS}
        if unit["image"] is None:
            raise RequestError(f"ControlNet unit {index + 1} is enabled but has no control image; upload one "
                               "or untick 'Enable'")
        if not unit["model"]:
            raise RequestError(f"ControlNet unit {index + 1} is enabled but has no model; pick one from "
                               "models/ControlNet or type a hub id")
        units.append(ControlNetUnit(
            model=str(unit["model"]), image=load_image(unit["image"], f"ControlNet unit {index + 1} image"),
            preprocessor=unit["preprocessor"] or "none", weight=float(unit["weight"]),
            guidance_start=float(unit["guidance_start"]), guidance_end=float(unit["guidance_end"]),
            canny_low=int(unit["canny_low"]), canny_high=int(unit["canny_high"])))
    return tuple(units)


def preview_map(engine, image, preprocessor, low, high, width, height):
    """(preview image, note) for one unit: what the ControlNet will see at the tab's output size, made by an
    engine job (learned detectors run on the worker's device and stay cached there)."""
    config, extra = engine.config, engine.controlnet_preprocessors
    name = preprocessor or "none"
    if image is None:
        return None, describe(name, config.models_dir) if name not in extra else f"{name} (from an extension)"
    try:
        image = load_image(image, "control image")
        finished = engine.submit(ControlMapRequest(image=image, preprocessor=name, width=int(width),
                                                   height=int(height), canny_low=int(low),
                                                   canny_high=int(high))).wait()
    except Exception as error:  # noqa: BLE001 - a bad value or an extension's failing preprocessor: shown, not raised
        return None, f"⚠️ {error}"
    return finished.result.image, finished.summary


def build_controlnet_panel(tab: str, engine, width: gr.Slider, height: gr.Slider) -> ControlNetPanel:
    config = engine.config
    models = controlnet_names(config)
    preprocessors = [*PREPROCESSOR_NAMES, *(n for n in engine.controlnet_preprocessors if n not in PREPROCESSOR_NAMES)]
    widgets: list[dict] = []
    with gr.Accordion("ControlNet", open=False, elem_id=f"{tab}-controlnet") as accordion:
        refresh = gr.Button("↻ Refresh ControlNet models", size="sm", elem_id=f"{tab}-controlnet-refresh")
        with gr.Tabs():
            for index in range(MAX_CONTROLNET_UNITS):
                prefix = f"{tab}-cn{index}"
                with gr.Tab(f"Unit {index + 1}", id=prefix):
                    enabled = gr.Checkbox(False, label="Enable", elem_id=f"{prefix}-enable")
                    with gr.Row():
                        image = gr.Image(label="Control image", type="filepath", image_mode=None,
                                         sources=["upload", "clipboard"], height=200, elem_id=f"{prefix}-image",
                                         elem_classes=["pixelated", "ldm-fill"])
                        preview = gr.Image(label="Preprocessed (what the ControlNet sees)", type="pil",
                                           interactive=False, height=200, elem_id=f"{prefix}-preview",
                                           elem_classes=["pixelated", "ldm-fill"], buttons=[])
                    with gr.Row():
                        preprocessor = gr.Dropdown(preprocessors, value="canny", label="Preprocessor",
                                                   elem_id=f"{prefix}-preprocessor")
                        model = gr.Dropdown(models, value=models[0] if models else None, allow_custom_value=True,
                                            label="ControlNet model (or a hub id)", elem_id=f"{prefix}-model")
                    with gr.Row():
                        weight = gr.Slider(0, MAX_CONTROL_WEIGHT, value=1.0, step=0.05, label="Weight",
                                           elem_id=f"{prefix}-weight")
                        start = gr.Slider(0, 1, value=0.0, step=0.01, label="Guidance start",
                                          elem_id=f"{prefix}-start")
                        end = gr.Slider(0, 1, value=1.0, step=0.01, label="Guidance end", elem_id=f"{prefix}-end")
                    with gr.Row():
                        low = gr.Slider(0, 255, value=CANNY_LOW, step=1, label="Canny low threshold",
                                        elem_id=f"{prefix}-canny-low")
                        high = gr.Slider(0, 255, value=CANNY_HIGH, step=1, label="Canny high threshold",
                                         elem_id=f"{prefix}-canny-high")
                    note = gr.Markdown(describe("canny", config.models_dir), elem_id=f"{prefix}-note")
                widgets.append(dict(enabled=enabled, image=image, preprocessor=preprocessor, model=model,
                                    weight=weight, guidance_start=start, guidance_end=end, canny_low=low,
                                    canny_high=high))
                preview_inputs = [image, preprocessor, low, high, width, height]
                handler = lambda *values: preview_map(engine, *values)  # noqa: E731
                for trigger in (image.change, preprocessor.change, low.release, high.release):
                    trigger(handler, preview_inputs, [preview, note], api_name=False,
                            concurrency_id="controlnet-preview",
                            concurrency_limit=1, show_progress="hidden")
                # uploading an image is the clearest sign the user wants this unit on
                image.upload(lambda: True, None, enabled, queue=False, api_name=False)
    refresh.click(lambda: [gr.update(choices=controlnet_names(config))] * len(widgets), None,
                  [w["model"] for w in widgets], queue=False, api_name=False)
    return ControlNetPanel(widgets, accordion)
