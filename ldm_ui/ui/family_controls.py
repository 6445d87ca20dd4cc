"""Each generation tab follows the loaded model's family (engine/families.py): a control whose feature the family
lacks is disabled or hidden, the sampler list holds the samplers that fit, and a note at the top of the tab says
what is off and why. The engine refuses the same features with the same reasons (for the HTTP API)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ldm_ui.engine.families import FEATURES, Family, family_named
from ldm_ui.engine.samplers import SAMPLER_NAMES

# the task a whole tab needs from the family: without it the tab's Generate button is off
TAB_TASKS = {"img2img": "img2img", "inpaint": "inpaint", "outpaint": "inpaint", "interpolate": "interpolate"}


@dataclass
class TabFamilyControls:
    """The widgets of one tab that depend on the family."""

    tab: str
    note: gr.Markdown
    negative_prompt: gr.Textbox
    clip_skip: gr.Slider
    sampler: gr.Dropdown
    generate: gr.Button
    cfg_scale: gr.Slider
    controlnet: Any = None  # the ControlNet accordion, where the tab has one
    seed_extras: Any = None  # the variation seed accordion, where the tab has one

    def outputs(self) -> list:
        return [w for w in (self.note, self.negative_prompt, self.clip_skip, self.sampler, self.generate,
                            self.cfg_scale, self.controlnet, self.seed_extras) if w is not None]

    def updates(self, loaded) -> list:
        """Gradio updates, in the order of `outputs()`, for the LoadedModel `loaded` (None: no model: all on)."""
        family = family_named(loaded.family) if loaded is not None else None
        on = (lambda feature: family is None or family.supports(feature))
        task = TAB_TASKS.get(self.tab)
        updates = [
            _note(self.tab, family, loaded),
            gr.update(interactive=on("negative_prompt"),
                      placeholder="" if on("negative_prompt") else
                      f"{family.label} has no negative prompt: {family.missing['negative_prompt']}"),
            gr.update(interactive=on("clip_skip")),
            _sampler_update(loaded),
            gr.update(interactive=task is None or on(task)),
            gr.update(label=cfg_label(family)),
        ]
        if self.controlnet is not None:
            updates.append(gr.update(visible=on("controlnet")))
        if self.seed_extras is not None:
            updates.append(gr.update(visible=on("variation_seeds")))
        return updates


def cfg_label(family: Family | None) -> str:
    """A guidance-distilled model (FLUX.1) takes the CFG scale as the strength of its embedded guidance."""
    if family is not None and family.guidance == "distilled":
        return f"CFG scale ({family.label}: distilled guidance)"
    return "CFG scale"


def _sampler_update(loaded):
    """The samplers that fit the model; a shorter list (flow matching) also selects its first, so a sampler picked
    for the previous model never stays selected outside the list (Gradio would refuse it at Generate)."""
    if loaded is None:
        return gr.update()
    names = list(loaded.sampler_names)
    if len(names) < len(SAMPLER_NAMES):
        return gr.update(choices=names, value=names[0])
    return gr.update(choices=names)


def tab_notes(tab: str, family: Family) -> list[str]:
    """What the tab's note lists: the task itself when the family lacks it, else each control that is off."""
    task = TAB_TASKS.get(tab)
    if task and not family.supports(task):
        return [f"{_title(task)}: not available. {_sentence(family.missing[task])}."]
    shown = ["negative_prompt", "clip_skip", "prompt_weights", "lora", "controlnet", "variation_seeds"]
    return [f"{_title(f)}: off. {_sentence(family.missing[f])}." for f in shown if not family.supports(f)]


def _title(feature: str) -> str:
    return FEATURES[feature][0].upper() + FEATURES[feature][1:]


def _sentence(reason: str) -> str:
    return reason[0].upper() + reason[1:]


def _note(tab: str, family: Family | None, loaded):
    lines = tab_notes(tab, family) if family is not None else []
    if not lines:
        return gr.update(value="", visible=False)
    text = f"**{loaded.entry.name}** is a {family.label} model.\n\n" + "\n".join(f"- {line}" for line in lines)
    return gr.update(value=text, visible=True)


def build_note(tab: str) -> gr.Markdown:
    """The (hidden until a family needs it) note at the top of a tab's controls."""
    return gr.Markdown("", visible=False, elem_id=f"{tab}-family-note", elem_classes=["ldm-family-note"])


def tab_family_controls(ui) -> list[TabFamilyControls]:
    """One entry per generation tab registered so far, with the accordions the tab registered."""
    found = []
    for tab, (controls, _panel) in ui.tabs.items():
        if controls.family_note is None:
            continue
        accordions = ui.family_accordions.get(tab, {})
        found.append(TabFamilyControls(tab, controls.family_note, controls.negative_prompt, controls.clip_skip,
                                       controls.sampler, controls.generate, controls.cfg_scale,
                                       accordions.get("controlnet"),
                                       accordions.get("seed_extras")))
    return found


def family_outputs(tabs: list[TabFamilyControls]) -> list:
    return [w for tab in tabs for w in tab.outputs()]


def family_updates(tabs: list[TabFamilyControls], loaded) -> list:
    return [u for tab in tabs for u in tab.updates(loaded)]
