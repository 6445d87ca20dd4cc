"""The "Refiner" accordion of txt2img and img2img: an SDXL refiner checkpoint and the point it takes over at.

API names follow AUTOMATIC1111 (`refiner_checkpoint`, `refiner_switch_at`); scripts may leave both out (no refiner).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import gradio as gr

from ldm_ui.requests import MIN_REFINER_SWITCH, RefinerSettings, RequestError
from ldm_ui.ui.inputs import Input

NO_REFINER = "None"
DEFAULT_SWITCH = 0.8
API_DEFAULTS = (("refiner_checkpoint", NO_REFINER), ("refiner_switch_at", DEFAULT_SWITCH))
CHECKPOINT_INFO = "An SDXL refiner (or another SDXL model) finishes the SDXL model's images; None: off"
SWITCH_INFO = "The fraction of the schedule the model runs before the refiner takes over (1 = never)"


@dataclass
class RefinerPanel:
    checkpoint: gr.Dropdown
    switch_at: gr.Slider

    def inputs(self) -> list:
        return [self.checkpoint, self.switch_at]

    def fields(self) -> list[Input]:
        """InputTable rows with API defaults (no refiner): they go after every required row."""
        return [Input(name, widget, default) for (name, default), widget in zip(API_DEFAULTS, self.inputs())]


def refiner_choices(engine) -> list[str]:
    return [NO_REFINER, *engine.models.model_names()]


def refiner_from(checkpoint: Any, switch_at: Any) -> RefinerSettings | None:
    """Widget (or API) values -> the request's RefinerSettings; None for no refiner."""
    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint.strip().lower() in ("", "none")):
        return None
    try:
        switch = float(DEFAULT_SWITCH if switch_at is None else switch_at)
    except (TypeError, ValueError):
        raise RequestError(f"refiner switch at must be a number from {MIN_REFINER_SWITCH:g} to 1, "
                           f"got {switch_at!r}") from None
    return RefinerSettings(checkpoint=checkpoint, switch_at=switch)


def refiner_of(values: dict[str, Any]) -> RefinerSettings | None:
    """`refiner_from` of the RefinerPanel rows in a tab's values dict (rows left out: no refiner)."""
    return refiner_from(*(values.get(name, default) for name, default in API_DEFAULTS))


def build_refiner_panel(tab: str, engine) -> RefinerPanel:
    with gr.Accordion("Refiner", open=False, elem_id=f"{tab}-refiner"):
        with gr.Row():
            checkpoint = gr.Dropdown(refiner_choices(engine), value=NO_REFINER, label="Checkpoint",
                                     info=CHECKPOINT_INFO, allow_custom_value=True, scale=3,
                                     elem_id=f"{tab}-refiner-checkpoint")
            refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id=f"{tab}-refiner-refresh")
            switch_at = gr.Slider(MIN_REFINER_SWITCH, 1.0, value=DEFAULT_SWITCH, step=0.01, label="Switch at",
                                  info=SWITCH_INFO, scale=3, elem_id=f"{tab}-refiner-switch-at")
    refresh.click(lambda: gr.update(choices=refiner_choices(engine)), None, checkpoint, queue=False,
                  api_visibility="private")
    return RefinerPanel(checkpoint, switch_at)


def matching_model(name: str, names: list[str]) -> str:
    """The listed model an infotext's refiner name means: the same name, else the one whose file name without its
    extension is that name (AUTOMATIC1111 writes `sd_xl_refiner_1.0` for `sd_xl_refiner_1.0.safetensors`); else
    the name as written (the job then says it is unknown, naming it)."""
    if name in names:
        return name
    return next((n for n in names if PurePosixPath(n).stem == name or PurePosixPath(n).name == name), name)


def refiner_updates(fields: dict[str, Any] | None, engine) -> list:
    """Updates for RefinerPanel.inputs() from an infotext's generation_fields (PNG info's "Send to"): its refiner
    and switch; an infotext without a refiner sets None; no infotext leaves them."""
    if fields is None:
        return [gr.skip(), gr.skip()]
    name = fields.get("refiner_checkpoint")
    if name is None:
        return [NO_REFINER, gr.skip()]
    return [matching_model(name, engine.models.model_names()), fields.get("refiner_switch_at", gr.skip())]
