"""The VAE picker beside the model picker: Automatic, None, or a VAE from models/VAE (and --vae-dir).

A pick runs as an engine job (after the jobs already queued), so no running job sees its VAE change mid-batch.
"""

from __future__ import annotations

import gradio as gr

from ldm_ui.engine.vae_choice import VAE_AUTOMATIC, vae_choices
from ldm_ui.requests import SetVaeRequest

INFO = "Automatic: the checkpoint's own (or <name>.vae.safetensors beside it); None: the checkpoint's own"


def current_choice(engine) -> str:
    loaded = engine.models.current
    selection = loaded.vae_selection if loaded is not None else None
    return selection.choice if selection is not None else VAE_AUTOMATIC


def describe(engine) -> str:
    loaded = engine.models.current
    selection = loaded.vae_selection if loaded is not None else None
    if selection is None or selection.file is None:
        return "VAE: the checkpoint's own."
    return f"VAE: **{selection.file.name}** · hash `{selection.hash}`"


def build_vae_picker(engine) -> tuple[gr.Dropdown, gr.Markdown]:
    picker = gr.Dropdown(vae_choices(engine.config), value=current_choice(engine), label="VAE", info=INFO,
                         scale=2, elem_id="vae-select")
    status = gr.Markdown(describe(engine), elem_id="vae-status", render=False)
    return picker, status


def set_vae(engine, name: str, model: str | None) -> str:
    """On the model the picker shows (not the default model: a request without one would load that)."""
    try:
        engine.submit(SetVaeRequest(vae=name or VAE_AUTOMATIC, model=model or None)).wait()
    except Exception as error:  # noqa: BLE001 - shown to the user, the app keeps serving
        return f"⚠️ {error}"
    return describe(engine)


def wire_vae_picker(engine, picker: gr.Dropdown, status: gr.Markdown, refresh: gr.Button, model: gr.Dropdown,
                    model_status: gr.Markdown) -> None:
    picker.change(lambda name, model_name: set_vae(engine, name, model_name), [picker, model], status, concurrency_id="gpu", concurrency_limit=1,
                  api_name="set_vae", show_progress_on=status)
    refresh.click(lambda: gr.update(choices=vae_choices(engine.config)), None, picker, queue=False,
                  api_visibility="private")
    # after a model switch (its status line changes): a sidecar VAE, or Automatic where the picked VAE did not fit
    model_status.change(lambda: (current_choice(engine), describe(engine)), None, [picker, status], queue=False,
                        api_visibility="private", show_progress="hidden")
