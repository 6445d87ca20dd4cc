"""What sits around a prompt box: the token counter ("23/75") and the textual-inversion picker.

The counter counts as the encoder chunks (AUTOMATIC1111's rules: 75 tokens per chunk on Stable Diffusion, 14 on
the built-in model; BREAK and long prompts add chunks, an embedding counts its vectors), with the loaded model's
tokenizer, so it grows to "/150" as a second chunk starts. LoRA tags are not counted: they never reach the encoder.
"""

from __future__ import annotations

import html
import logging

import gradio as gr

log = logging.getLogger(__name__)


def usable_embeddings(engine) -> dict:
    """The embeddings whose widths fit the loaded model's text encoders (all of them when none is loaded)."""
    embeddings = engine.embeddings.scan()
    loaded = engine.models.current
    if getattr(loaded, "pipe", None) is None:  # none loaded yet, or it lives on Ray replicas (a summary here)
        return embeddings
    from ldm_ui.prompts.encoding import text_encoders  # with a model loaded, torch is in: the page came first

    try:
        widths = [e.width for e in text_encoders(loaded.pipe)]
    except ValueError:  # a pipeline without a text encoder reads no prompt
        return {}
    return {name: e for name, e in embeddings.items() if e.fits(widths)}


def token_counter(engine, prompt: str | None, steps=20) -> str:
    loaded = engine.models.current
    if getattr(loaded, "pipe", None) is None:  # the tokenizer is on the replicas with the --backend ray
        return ""
    from ldm_ui.engine.adapters import encoder_prompt
    from ldm_ui.prompts.conditioning import prompt_token_count

    try:
        count, capacity = prompt_token_count(loaded.pipe, encoder_prompt(prompt or ""), int(steps or 20),
                                             usable_embeddings(engine))
    except Exception as error:  # noqa: BLE001 - a counter must never break typing
        log.warning("token counter: %s", error)
        return ""
    return f'<span class="ldm-token-count">{count}/{capacity}</span>'


def build_token_counter(tab: str, which: str) -> gr.HTML:
    return gr.HTML("", elem_id=f"{tab}-{which}-token-count", elem_classes=["ldm-token-counter"])


def wire_token_counter(engine, prompt: gr.Textbox, steps: gr.Slider, counter: gr.HTML) -> None:
    update = lambda text, steps_value: token_counter(engine, text, steps_value)  # noqa: E731
    for trigger in (prompt.change, steps.change):
        trigger(update, [prompt, steps], counter, queue=False, show_progress="hidden", api_visibility="private")


def embedding_choices(engine) -> list[str]:
    return sorted(usable_embeddings(engine), key=str.lower)


def problems_note(engine) -> str:
    problems = engine.embeddings.problems
    if not problems:
        return ""
    return "Skipped: " + "; ".join(html.escape(message) for message in problems.values())


def insert_embedding(prompt: str | None, name: str | None) -> str:
    prompt = prompt or ""
    if not name:
        return gr.skip()
    return f"{prompt}, {name}" if prompt.strip() else name


def build_embedding_picker(tab: str, prompt: gr.Textbox, negative: gr.Textbox, engine) -> gr.Dropdown:
    # the file names only: reading the files needs torch, which the page is served without (app.py). Opening the
    # accordion reads them, and then lists only those that load and fit the loaded model, with the skipped ones
    names = sorted(engine.embeddings.file_names(), key=str.lower)
    folders = ", ".join(f"`{d}`" for d in engine.config.embedding_dirs())
    with gr.Accordion("Textual inversion", open=False, elem_id=f"{tab}-embedding-accordion") as accordion:
        with gr.Row(equal_height=True):
            choice = gr.Dropdown(names, value=names[0] if names else None, label="Embedding", scale=3,
                                 elem_id=f"{tab}-embedding-name",
                                 info=f"its name in a prompt uses it; from {folders}")
        with gr.Row():
            add = gr.Button("Add to prompt", size="sm", elem_id=f"{tab}-embedding-insert")
            add_negative = gr.Button("Add to negative", size="sm", elem_id=f"{tab}-embedding-insert-negative")
            refresh = gr.Button("↻ Refresh list", size="sm", elem_id=f"{tab}-embedding-refresh")
        note = gr.Markdown("", elem_id=f"{tab}-embedding-note")
    add.click(insert_embedding, [prompt, choice], prompt, queue=False, api_name=False)
    add_negative.click(insert_embedding, [negative, choice], negative, queue=False, api_name=False)

    def refreshed():
        names = embedding_choices(engine)
        return gr.update(choices=names, value=names[0] if names else None), problems_note(engine)

    for trigger in (refresh.click, accordion.expand):
        trigger(refreshed, None, [choice, note], queue=False, api_name=False)
    return choice
