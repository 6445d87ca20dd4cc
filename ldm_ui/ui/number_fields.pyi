"""One rule for numbers in every tab: a problem shows where the number is typed, Generate names it in the status.

- While a number is typed (a slider's box or a number field), a note under the field says what is wrong with it:
  out of range, not a whole number, not a multiple of the slider's step. The limits are the field's own (the
  `min`, `max` and `step` Gradio gives the input), so the note and the field cannot disagree.
- A slider puts an out-of-range value back into its range when the field is left (Gradio's own behaviour); the
  note then says what it was set to, so nothing changes silently.
- A value that is still wrong when Generate is pressed (width 100, seed 99999999999) reaches the request's own
  check, and the tab's status line names it. `CheckedLaterNumber` is a number field whose out-of-range value is
  passed on to that check: Gradio's own check would raise a toast and put Error badges on every output.
"""

from __future__ import annotations

import gradio as gr

from gradio.events import Dependency

class CheckedLaterNumber(gr.Number):
    """gr.Number (same widget, same `min`/`max` attributes for the note) whose value goes to the handler unchecked
    against its range: the request's validation names it in the tab's status line instead of a toast."""

    def get_block_name(self) -> str:  # Gradio's documented hook: render with the built-in Number widget
        return "number"

    def preprocess(self, payload: float | None) -> float | int | None:
        if payload is None:
            return None
        return self.round_to_precision(payload, self.precision)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


NUMBER_NOTES_JS = """
() => {
  // A note under a number field while what is typed there is not allowed (ldm_ui/ui/number_fields.py)
  const blockOf = (input) => input.closest("div.block[id]");
  const labelOf = (block) => {
    const info = block.querySelector("[data-testid='block-info']");
    return ((info && info.textContent) || "This value").trim().replace(/\\s*\\(.*\\)$/, "");
  };
  const noteOf = (block, create) => {
    let note = block.querySelector(":scope > .ldm-field-note");
    if (!note && create) {
      note = document.createElement("div");
      note.className = "ldm-field-note";
      block.appendChild(note);
    }
    return note;
  };
  const show = (block, text) => {
    const note = noteOf(block, Boolean(text));
    if (note) { note.textContent = text; note.hidden = !text; }
  };
  const format = (n) => String(Number(n.toFixed(6)));
  const problem = (input, block, snaps, left) => {
    const typed = input.value.trim();
    if (typed === "") return "";
    const label = labelOf(block), n = Number(typed);
    const min = input.min === "" ? -Infinity : Number(input.min), max = input.max === "" ? Infinity : Number(input.max);
    const step = input.step === "" || input.step === "any" ? 0 : Number(input.step);
    const range = `${format(min)} to ${format(max)}`;
    if (!Number.isFinite(n)) return `${label}: ${typed} is not a number.`;
    if (n < min || n > max) {
      const edge = n < min ? min : max, side = n < min ? "below the minimum" : "above the maximum";
      const snap = left ? `so it was set to ${format(edge)}` : `it becomes ${format(edge)} when you leave the field`;
      return snaps ? `${label}: ${typed} is ${side} ${format(edge)}; ${snap} (allowed: ${range}).`
                   : `${label} must be ${range}; ${typed} is ${side}.`;
    }
    if (Number.isInteger(step) && step >= 1) {
      const base = Number.isFinite(min) ? min : 0, offset = n - base;
      if (Math.abs(offset / step - Math.round(offset / step)) > 1e-9) {
        if (step === 1) return `${label} must be a whole number; ${typed} is not.`;
        const lower = base + Math.floor(offset / step) * step;
        return `${label} must be a multiple of ${step} (${range}); ${typed} is not: use ${format(lower)} or ${format(lower + step)}.`;
      }
    }
    return "";
  };
  const check = (event) => {
    const input = event.target;
    if (!(input instanceof HTMLInputElement) || !input.closest) return;
    const block = blockOf(input);
    if (!block) return;
    const slider = block.querySelector("input[type='range']");
    if (input.type === "range") { show(block, ""); return; }  // dragging gives allowed values only
    if (input.type !== "number") return;
    if (event.type === "input") {
      block.dataset.ldmTyped = "1";
      show(block, problem(input, block, Boolean(slider), false));
    } else if (block.dataset.ldmTyped) {  // left: runs before the slider's own snap
      show(block, problem(input, block, Boolean(slider), true));
      delete block.dataset.ldmTyped;
    }
  };
  document.addEventListener("input", check, true);
  document.addEventListener("change", check, true);  // leaving a changed field: change, then blur
  document.addEventListener("blur", check, true);
}
"""

NUMBER_NOTES_CSS = """
.ldm-field-note { color: #b45309; font-size: 0.85em; padding: 2px 4px 0; }
"""
class CheckedLaterSlider(gr.Slider):
    """gr.Slider whose value goes to the handler unchecked against its range (see CheckedLaterNumber)."""

    def get_block_name(self) -> str:
        return "slider"

    def preprocess(self, payload: float) -> float:
        return gr.Number.round_to_precision(payload, self.precision)
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component

    