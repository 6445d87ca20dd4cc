"""The Extras tab: upscale one image or a batch (several uploads, or a folder inside the outputs) with any pixel
upscaler, or two blended; results are saved under outputs/extras and can be sent to img2img or inpaint."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from PIL import Image

from ldm_ui.engine.tasks.upscale import IMAGE_SUFFIXES, NO_UPSCALER
from ldm_ui.requests import MAX_UPSCALE_FACTOR, MAX_UPSCALED_SIDE, RequestError, UpscaleRequest
from ldm_ui.ui.common import begin_generate, build_output_panel, interrupt, stream_job
from ldm_ui.ui.hires_panel import upscaler_library
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.send_to import chosen_output

SOURCES = ("Single image", "Batch of uploads", "Folder in outputs")
SEND_TARGETS = ("img2img", "inpaint", "outpaint")


def output_folders(outputs_dir: Path) -> list[str]:
    """Folders inside the outputs that hold images, relative and '/'-separated (e.g. 'txt2img/2026-12-01')."""
    if not outputs_dir.is_dir():
        return []
    found = {path.parent.relative_to(outputs_dir).as_posix() for path in outputs_dir.rglob("*")
             if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and path.parent != outputs_dir}
    return sorted(found)


def to_request(source, image, files, folder, resize_mode, scale, width, height, upscaler, upscaler_2,
               visibility) -> UpscaleRequest:
    if source == "Single image":
        if image is None:
            raise RequestError("drop an image to upscale first")
        images, folder = (image,), None
    elif source == "Batch of uploads":
        if not files:
            raise RequestError("upload one or more images to upscale first")
        images, folder = tuple(_open(path) for path in files), None
    else:
        if not folder:
            raise RequestError("pick a folder inside the outputs first")
        images = ()
    by_size = resize_mode == "Scale to"
    return UpscaleRequest(images=images, folder=folder, upscaler=upscaler or "", scale=float(scale),
                          resize_width=int(width) if by_size else 0, resize_height=int(height) if by_size else 0,
                          upscaler_2=upscaler_2 or NO_UPSCALER, upscaler_2_visibility=float(visibility))


def _open(path) -> Image.Image:
    path = getattr(path, "name", path)
    try:
        with Image.open(path) as opened:
            opened.load()
            return opened.convert("RGB")
    except OSError as error:
        raise RequestError(f"{Path(path).name} could not be read as an image: {error}") from None


def build(ui) -> None:
    engine = ui.engine
    upscalers = upscaler_library(engine)
    with gr.Row():
        with gr.Column(scale=1):
            source = gr.Radio(list(SOURCES), value=SOURCES[0], label="Upscale", elem_id="extras-source")
            image = gr.Image(label="Image", type="pil", image_mode=None, sources=["upload", "clipboard"],
                             height=300, elem_id="extras-image")
            files = gr.File(label="Images", file_count="multiple", file_types=["image"], visible=False,
                            elem_id="extras-files")
            with gr.Row(visible=False) as folder_row:
                folder = gr.Dropdown(output_folders(engine.config.outputs_dir), label="Folder in outputs",
                                     allow_custom_value=True, elem_id="extras-folder", scale=4)
                refresh_folders = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id="extras-folder-refresh")
            resize_mode = gr.Radio(["Scale by", "Scale to"], value="Scale by", label="Resize",
                                   elem_id="extras-resize-mode")
            scale = gr.Slider(1, MAX_UPSCALE_FACTOR, value=2, step=0.05, label="Upscale by", elem_id="extras-scale")
            with gr.Row():
                width = gr.Slider(64, MAX_UPSCALED_SIDE, value=512, step=8, label="Width (Scale to)",
                                  elem_id="extras-width")
                height = gr.Slider(64, MAX_UPSCALED_SIDE, value=512, step=8, label="Height (Scale to; crops to fit)",
                                   elem_id="extras-height")
            with gr.Row():
                upscaler = gr.Dropdown(upscalers.pixel_upscalers(), value="Lanczos", label="Upscaler 1",
                                       elem_id="extras-upscaler")
                upscaler_2 = gr.Dropdown([NO_UPSCALER, *upscalers.pixel_upscalers()], value=NO_UPSCALER,
                                         label="Upscaler 2", elem_id="extras-upscaler-2")
                refresh = gr.Button("↻", size="sm", scale=0, min_width=40, elem_id="extras-refresh")
            visibility = gr.Slider(0, 1, value=0, step=0.01, label="Upscaler 2 visibility",
                                   elem_id="extras-upscaler-2-visibility")
            broken = gr.Markdown(_broken_text(upscalers), elem_id="extras-broken")
            with gr.Row():
                run = gr.Button("Upscale", variant="primary", elem_id="extras-run")
                stop = gr.Button("Interrupt", variant="stop", elem_id="extras-interrupt")
        with gr.Column(scale=1):
            panel = build_output_panel("extras")
            with gr.Row():
                send = {target: gr.Button(f"Send to {target}", size="sm", elem_id=f"extras-send-{target}")
                        for target in SEND_TARGETS}
            send_status = gr.HTML("", elem_id="extras-send-status")

    source.change(lambda s: [gr.update(visible=s == SOURCES[0]), gr.update(visible=s == SOURCES[1]),
                             gr.update(visible=s == SOURCES[2])],
                  source, [image, files, folder_row], queue=False, api_visibility="private")
    refresh_folders.click(lambda: gr.update(choices=output_folders(engine.config.outputs_dir)), None, folder,
                          queue=False, api_visibility="private")

    def refreshed():
        names = upscalers.pixel_upscalers()
        return gr.update(choices=names), gr.update(choices=[NO_UPSCALER, *names]), _broken_text(upscalers)

    refresh.click(refreshed, None, [upscaler, upscaler_2, broken], queue=False, api_visibility="private")

    table = InputTable([("source", source), ("image", image), ("files", files), ("folder", folder),
                        ("resize_mode", resize_mode), ("scale", scale), ("width", width), ("height", height),
                        ("upscaler", upscaler), ("upscaler_2", upscaler_2), ("visibility", visibility),
                        ("session", ui.session)])
    ui.input_tables["extras"] = table

    def run_extras(values):
        session = values.pop("session")
        yield from stream_job(engine, session, lambda: to_request(*values.values()), "extras")

    run_extras.__name__ = "extras"
    # an Interrupt from before this click is forgotten; one after it stops the job even before it is submitted
    run.click(lambda session: begin_generate(session, "extras"), ui.session, None, queue=False,
              show_progress="hidden", api_visibility="private").then(
        table.handler(run_extras), table.components, panel.outputs(), concurrency_limit=None,
        show_progress="hidden", api_name="extras").then(lambda: _broken_text(upscalers), None, broken, queue=False,
                                                        api_visibility="private")
    stop.click(lambda session: interrupt(session, "extras"), ui.session, panel.status, queue=False,
               api_visibility="private")
    selected = gr.State(None)
    panel.gallery.select(_selected_index, None, selected, queue=False, api_visibility="private")
    ui.after_build.append(lambda ui: ui.after_build.append(
        lambda ui: _wire_send(ui, send, panel.outputs_state, selected, send_status)))


def _selected_index(event: gr.SelectData) -> int:
    return event.index


def _broken_text(upscalers) -> str:
    broken = upscalers.describe_broken()
    return ("**Broken upscaler files (not listed):** " + "; ".join(broken)) if broken else ""


def _wire_send(ui, buttons: dict, outputs_state, selected, status) -> None:
    """Send the chosen result to img2img / inpaint / outpaint (their image inputs exist once every tab is built)."""
    for target, button in buttons.items():
        image_input = ui.image_inputs.get(target)
        if image_input is None:  # that tab is not part of this app
            continue

        def send(outputs, index, target: str = target):
            output = chosen_output(outputs, index)
            if output is None:
                return gr.skip(), gr.skip(), "Nothing to send yet: upscale an image first."
            return output.path or output.image, gr.Tabs(selected=target), (
                f"Sent the {output.image.width}x{output.image.height} image to {target}.")

        button.click(send, [outputs_state, selected], [image_input, ui.tab_group, status], queue=False,
                     api_visibility="private")
