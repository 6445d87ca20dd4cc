"""The Latent inspector tab: drop an image, see what the VAE keeps of it (channels, sizes, reconstruction, PSNR)."""

from __future__ import annotations

import math

import gradio as gr

from ldm_ui.images import load_image
from ldm_ui.requests import Cancelled, Failed, Finished, InspectLatentsRequest, RequestError
from ldm_ui.ui.common import describe_cancelled, one_line, render_status, without_server_paths
from ldm_ui.ui.inputs import InputTable

INTRO = ("A latent diffusion model never sees pixels: its VAE squeezes each image into a small latent, the "
         "diffusion runs there, and the VAE decodes the result. Drop an image to see that latent and how much of "
         "the picture survives the round trip.")


def format_ratio(ratio: float) -> str:
    return f"{ratio:,.0f}" if ratio == int(ratio) else f"{ratio:,.1f}"


def describe(inspection) -> str:
    """The sizes, value counts, compression and PSNR, as the tab shows them (markdown)."""
    width, height = inspection.size
    lw, lh = inspection.latent_size
    f = inspection.downscale
    psnr = "∞ (identical)" if math.isinf(inspection.psnr_db) else f"{inspection.psnr_db:.2f} dB"
    lines = [
        f"**Pixels:** {width}×{height}×3 = {inspection.pixel_values:,} values  \n"
        f"**Latent:** {lw}×{lh}×{inspection.latent_channels} = {inspection.latent_values:,} values  \n"
        f"**{format_ratio(inspection.compression)}× smaller**: each latent cell of {inspection.latent_channels} "
        f"numbers stands for a {f}×{f} patch of pixels ({f * f * 3} numbers).",
        f"**Reconstruction PSNR:** {psnr} (higher is closer; above ~30 dB differences are hard to see)",
    ]
    if inspection.input_size != inspection.size:
        iw, ih = inspection.input_size
        lines.append(f"The {iw}×{ih} upload was centre-cropped to {width}×{height}, whole {f}-pixel cells.")
    rows = ["| channel | min | max | mean | std |", "|---:|---:|---:|---:|---:|"]
    for index, s in enumerate(inspection.channel_stats):
        rows.append(f"| {index} | {s.minimum:.3f} | {s.maximum:.3f} | {s.mean:.3f} | {s.std:.3f} |")
    lines.append("Channel values (scaled latent, what the UNet sees); each channel image below maps its own "
                 "min..max to black..white:\n\n" + "\n".join(rows))
    return "\n\n".join(lines)


def inspect(engine, image, model):
    """Run the inspection on the engine's worker; yields (status, summary, comparison, channels)."""
    skip = gr.skip()
    if image is None:
        yield render_status("Drop an image to inspect.", kind="warn"), skip, skip, skip
        return
    try:
        job = engine.submit(InspectLatentsRequest(image=load_image(image, "image"), model=model or None))
    except RequestError as error:
        yield render_status(one_line(error, engine.config), kind="error"), skip, skip, skip
        return
    try:
        for event in job.events():
            if isinstance(event, Finished):
                found = event.result
                comparison = [(found.original, "original"), (found.reconstruction, "VAE reconstruction")]
                channels = [(image, f"channel {i}: {s.minimum:.2f} … {s.maximum:.2f}")
                            for i, (image, s) in enumerate(zip(found.channels, found.channel_stats))]
                yield render_status("Done.", 1.0, "ok"), describe(found), comparison, channels
            elif isinstance(event, Failed):
                message = without_server_paths(event.message, engine.config)
                yield render_status(f"Failed: {message}", kind="error"), skip, skip, skip
            elif isinstance(event, Cancelled):  # "Interrupted." or the engine's reason, said once
                yield render_status(describe_cancelled(event, None, 0), kind="warn"), skip, skip, skip
            elif getattr(event, "message", ""):
                yield render_status(event.message, 0.5), skip, skip, skip
    finally:
        if not job.done.is_set():
            job.cancel()


def build(ui) -> None:
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=1):
            image = gr.Image(label="Image", type="filepath", image_mode=None, sources=["upload", "clipboard"],
                             height=320, elem_id="inspector-image", elem_classes=["pixelated", "ldm-fill"])
            run = gr.Button("Inspect", variant="primary", elem_id="inspector-run")
            status = gr.HTML(render_status("Ready."), elem_id="inspector-status")
            summary = gr.Markdown(elem_id="inspector-summary")
        with gr.Column(scale=1):
            comparison = gr.Gallery(label="Original and reconstruction", columns=2, height="auto",
                                    object_fit="contain", format="png", elem_id="inspector-comparison",
                                    elem_classes=["pixelated", "ldm-fill"])
            channels = gr.Gallery(label="Latent channels", columns=4, height="auto", object_fit="contain",
                                  format="png", elem_id="inspector-channels", elem_classes=["pixelated", "ldm-fill"])

    table = InputTable([("picture", image), ("model", ui.model)])

    def inspect_latents(values):
        yield from inspect(ui.engine, values["picture"], values["model"])

    handler = table.handler(inspect_latents)
    outputs = [status, summary, comparison, channels]
    run.click(handler, table.components, outputs, api_name="inspect_latents", concurrency_limit=None,
              show_progress="hidden")
    image.upload(handler, table.components, outputs, api_name=False, concurrency_limit=None, show_progress="hidden")
