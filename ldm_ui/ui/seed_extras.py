"""Seed controls: the 🎲 (random) and ♻ (the selected image's seed) buttons beside a seed box, and the
"Extra" seed section of txt2img, img2img and inpaint (variation seed, variation strength, resize seed from
width x height)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ldm_ui.metadata import parse_infotext
from ldm_ui.ui.number_fields import CheckedLaterNumber
from ldm_ui.requests import MAX_SEED, MAX_SIZE, Output, RequestError, VariationSeed
from ldm_ui.ui.inputs import Input

DICE, RECYCLE = "🎲", "♻"
STRENGTH_INFO = "0: the seed's image; 1: the variation seed's noise; in between, a mix (slerp) of the two noises."
RESIZE_INFO = "Make the seed's noise at this size and centre it, so the picture keeps its composition at a new " \
              "size. 0 x 0: off."


@dataclass
class SeedExtras:
    variation_seed: gr.Number
    variation_strength: gr.Slider
    resize_from_width: gr.Slider
    resize_from_height: gr.Slider
    accordion: gr.Accordion | None = None  # hidden for a family whose pipeline draws its own noise

    def inputs(self) -> list[gr.components.Component]:
        """In the order of `variation_from`'s parameters."""
        return [self.variation_seed, self.variation_strength, self.resize_from_width, self.resize_from_height]

    def fields(self) -> list[tuple[str, gr.components.Component]]:
        """(public API name, widget) rows for a tab's InputTable; `variation_of(values)` reads them back."""
        return list(zip(VARIATION_FIELDS, self.inputs()))

    def optional_fields(self) -> list[Input]:
        """The same rows with API defaults (off), for tabs whose API had no variation before: scripts that leave
        them out keep working; they go after every required row."""
        return [Input(name, component, default)
                for (name, component), default in zip(self.fields(), VARIATION_OFF)]


VARIATION_FIELDS = ("variation_seed", "variation_strength", "resize_seed_from_width", "resize_seed_from_height")
VARIATION_OFF = (-1, 0.0, 0, 0)


def variation_of(values: dict[str, Any]) -> VariationSeed | None:
    """`variation_from` of the SeedExtras rows in a tab's values dict (rows left out: off)."""
    return variation_from(*(values.get(name, off) for name, off in zip(VARIATION_FIELDS, VARIATION_OFF)))


def seed_buttons(tab: str, what: str = "seed") -> tuple[gr.Button, gr.Button]:
    """🎲 and ♻, small, for the seed box just built in the current row."""
    dice = gr.Button(DICE, size="sm", min_width=40, scale=0, elem_id=f"{tab}-{what}-random",
                     elem_classes=["ldm-tool"])
    recycle = gr.Button(RECYCLE, size="sm", min_width=40, scale=0, elem_id=f"{tab}-{what}-reuse",
                        elem_classes=["ldm-tool"])
    return dice, recycle


def build_seed_extras(tab: str) -> tuple[SeedExtras, gr.Button, gr.Button]:
    with gr.Accordion("Extra seed settings", open=False, elem_id=f"{tab}-seed-extras") as accordion:
        with gr.Row():
            with gr.Row(equal_height=True):
                variation_seed = CheckedLaterNumber(value=-1, precision=0, minimum=-1, maximum=MAX_SEED, scale=4,
                                           label="Variation seed (-1 = random)", elem_id=f"{tab}-variation-seed")
                dice, recycle = seed_buttons(tab, "variation-seed")
            strength = gr.Slider(0.0, 1.0, value=0.0, step=0.01, label="Variation strength", info=STRENGTH_INFO,
                                 elem_id=f"{tab}-variation-strength")
        with gr.Row():
            resize_width = gr.Slider(0, MAX_SIZE, value=0, step=8, label="Resize seed from width", info=RESIZE_INFO,
                                     elem_id=f"{tab}-resize-seed-width")
            resize_height = gr.Slider(0, MAX_SIZE, value=0, step=8, label="Resize seed from height",
                                      elem_id=f"{tab}-resize-seed-height")
    return SeedExtras(variation_seed, strength, resize_width, resize_height, accordion), dice, recycle


def variation_from(variation_seed: Any, strength: Any, resize_width: Any, resize_height: Any) -> VariationSeed | None:
    """Widget values -> the request's VariationSeed; None when every setting is off (strength 0, no resize)."""
    variation = VariationSeed(seed=_whole(variation_seed, "variation seed"), strength=float(strength or 0.0),
                              resize_from_width=_whole(resize_width or 0, "resize seed from width"),
                              resize_from_height=_whole(resize_height or 0, "resize seed from height"))
    return variation if variation.active else None


def selected_seed(outputs: list[Output], chosen: str | None, key: str | None = None):
    """The seed of the image picked in the gallery (else the last one); with `key`, that infotext entry's number.

    The pick is remembered by the image's path, so a newer batch (which lacks it) falls back to its last image.
    """
    if not outputs:
        return gr.skip()
    output = next((o for o in outputs if chosen is not None and o.path == chosen), outputs[-1])
    if key is None:
        return output.seed
    value = parse_infotext(output.infotext).get_int(key)
    return gr.skip() if value is None else value


def chosen_path(panel) -> gr.State:
    """The path of the result picked in `panel`'s gallery (None until one is): one State and one select handler
    for all the ♻ buttons of a tab, so the seed's and the variation seed's read the same pick (with a handler
    each, the second could still be on its way when its button was pressed)."""
    if panel.chosen_path is None:
        panel.chosen_path = gr.State(None)
        panel.gallery.select(_chosen_path, panel.outputs_state, panel.chosen_path, queue=False,
                             api_visibility="private", show_progress="hidden")
    return panel.chosen_path


def wire_seed_buttons(panel, seed: gr.Number, dice: gr.Button, recycle: gr.Button, key: str | None = None) -> None:
    """🎲 sets -1; ♻ takes the seed (or the infotext's `key`) of the image selected in this tab's gallery."""
    chosen = chosen_path(panel)
    dice.click(lambda: -1, None, seed, queue=False, api_visibility="private", show_progress="hidden")
    recycle.click(lambda outputs, path: selected_seed(outputs, path, key), [panel.outputs_state, chosen], seed,
                  queue=False, api_visibility="private", show_progress="hidden")


def _whole(value: Any, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a whole number, got {value!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise RequestError(f"{name} must be a whole number, got {value!r}")
    return int(number)


def _chosen_path(outputs: list[Output], event: gr.SelectData) -> str | None:
    return outputs[event.index].path if outputs and 0 <= event.index < len(outputs) else None

