"""Switch the VAE of the loaded model through the queue, after the jobs already waiting; no checkpoint reload."""

from __future__ import annotations

from ldm_ui.engine.context import TaskContext
from ldm_ui.engine.vae_choice import apply_vae
from ldm_ui.requests import Finished, SetVaeRequest
from ldm_ui.results import VaeChanged


def run(ctx: TaskContext) -> Finished:
    request: SetVaeRequest = ctx.request
    model = ctx.model
    selection = apply_vae(model, request.vae.strip(), ctx.config)
    used = selection.file.name if selection.file else "the checkpoint's own VAE"
    return Finished(outputs=[], summary=f"VAE: {request.vae} ({used}).",
                    result=VaeChanged(choice=selection.choice, vae=selection.file.name if selection.file else None,
                                      vae_hash=selection.hash))
