"""The LoRA/ControlNet tab: what is on disk, what is loaded, and which preprocessors are ready."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ldm_ui.engine.controlnet import controlnet_dir, list_controlnets
from ldm_ui.engine.lora import (
    LoraError, cached_lora_hash, describe_loaded, list_loras, lora_dirs, lora_hash, lora_layout, lora_tag,
)
from ldm_ui.engine.preprocessors import ANNOTATOR_REPO, PREPROCESSORS, annotators_dir, missing_weights
from ldm_ui.ui.common import without_server_paths

TAB_TITLE = "LoRA/ControlNet"  # as ui/tabs.py lists it

LORA_HEADERS = ["Name", "Tag", "Layout", "Size", "Hash", "File"]


def lora_rows(config, compute_hashes: bool = False) -> list[list[str]]:
    rows = []
    for entry in list_loras(config):
        try:
            layout = lora_layout(entry.path)
        except LoraError:
            layout = "not a LoRA"
        short = lora_hash(entry.path, config.cache_dir) if compute_hashes else cached_lora_hash(
            entry.path, config.cache_dir)
        rows.append([entry.name, lora_tag(entry.name), layout, human_size(entry.path.stat().st_size),
                     short or "(not computed)", shown_path(entry.path, config)])
    return rows


def shown_path(path, config) -> str:
    """models/Lora/x.safetensors for the app's folders; for a folder added with --lora-dir, its own name and what
    is under it: where the server keeps it is not the browser's business."""
    text = without_server_paths(str(path), config)
    if text != str(path):
        return text
    for folder in lora_dirs(config):
        try:
            return str(Path(Path(folder).name) / Path(path).resolve().relative_to(Path(folder).resolve()))
        except ValueError:
            continue
    return Path(path).name


def human_size(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} KB"


def controlnet_rows(config) -> list[list[str]]:
    return [[e.name, e.kind, without_server_paths(str(e.location), config)] for e in list_controlnets(config)]


def preprocessor_rows(config) -> list[list[str]]:
    rows = []
    for name, spec in PREPROCESSORS.items():
        missing = missing_weights(name, config.models_dir)
        status = "ready" if not missing else f"needs a download: {', '.join(missing)}"
        rows.append([name, spec.description, status])
    return rows


def loaded_summary(engine) -> str:
    current = engine.models.current
    if current is None:
        return "No model loaded."
    if not hasattr(current, "pipe"):  # the ray backend: the weights live on the engine replicas
        return f"**{current.entry.name}** runs on engine replicas; their LoRA and ControlNet caches stay there."
    adapters = describe_loaded(current.pipe)
    loras = ", ".join(adapters) if adapters else "none"
    cached = [Path(location).name for location in current.controlnets]
    controlnets = ", ".join(cached) if cached else "none"
    return (f"**Loaded on {current.entry.name}:** LoRA adapters: {loras} · ControlNet models: {controlnets}\n\n"
            "A job uses only the LoRAs its prompt names, at their weights, merged into the model's weights while "
            "the next jobs ask for the same ones (as fast as the model alone); a change puts the original weights "
            "back exactly.")


def build(ui) -> None:
    config = ui.engine.config
    shown = lambda path: shown_path(path, config)  # noqa: E731 - models/..., not the server's path
    folders = ", ".join(f"`{shown(d)}`" for d in lora_dirs(config))
    gr.Markdown(f"### LoRA\nFiles (`.safetensors`, kohya/AUTOMATIC1111 or diffusers layout) are read from {folders} "
                "(add folders with `--lora-dir`). Use one by writing its tag in the prompt, e.g. "
                "`<lora:name:0.8>`, or with the LoRA picker under the prompt.")
    loras = gr.Dataframe(lora_rows(config), headers=LORA_HEADERS, interactive=False, wrap=True,
                         elem_id="adapters-lora-table")
    with gr.Row():
        refresh = gr.Button("↻ Refresh", size="sm", elem_id="adapters-refresh")
        hashes = gr.Button("Compute hashes", size="sm", elem_id="adapters-hashes")
    loaded = gr.Markdown(loaded_summary(ui.engine), elem_id="adapters-loaded")
    gr.Markdown(f"### ControlNet\nDiffusers folders and single `.safetensors` files in `{shown(controlnet_dir(config))}`; "
                "a hub id (e.g. `lllyasviel/control_v11p_sd15_canny`) also works once downloaded.")
    controlnets = gr.Dataframe(controlnet_rows(config), headers=["Name", "Kind", "Location"], interactive=False,
                               wrap=True, elem_id="adapters-controlnet-table")
    gr.Markdown(f"### Preprocessors\nThose marked *needs a download* use learned detectors: get their files from "
                f"https://huggingface.co/{ANNOTATOR_REPO} and put them in "
                f"`{shown(annotators_dir(config.models_dir))}`.")
    preprocessors = gr.Dataframe(preprocessor_rows(config), headers=["Name", "What it does", "Status"],
                                 interactive=False, wrap=True, elem_id="adapters-preprocessor-table")

    def refresh_all():
        return lora_rows(config), loaded_summary(ui.engine), controlnet_rows(config), preprocessor_rows(config)

    outputs = [loras, loaded, controlnets, preprocessors]
    refresh.click(refresh_all, None, outputs, queue=False, api_name=False)
    # what is loaded changes with every job and model switch: shown fresh whenever the tab is opened
    ui.after_build.append(lambda ui: ui.tab_components[TAB_TITLE].select(
        refresh_all, None, outputs, queue=False, api_visibility="private", show_progress="hidden"))
    hashes.click(lambda: lora_rows(config, compute_hashes=True), None, loras, api_name=False)
