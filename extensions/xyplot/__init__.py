"""X/Y plot: one image per combination of two settings (e.g. CFG scale x steps), in a labeled grid.

Every cell is an ordinary txt2img request through the engine's queue, with the same seed unless Seed is an
axis, so the grid compares settings and nothing else.
"""

from __future__ import annotations

import html
from typing import Any

from ldm_ui.extensions import ExtensionApi

from .grid import AXES, label, make_grid, parse_values, plan_cells, run_cells


def register(api: ExtensionApi) -> None:
    api.add_tab("X/Y plot", lambda ui: build_tab(api, ui))


def build_tab(api: ExtensionApi, ui) -> None:
    import gradio as gr

    axes = list(AXES)
    with gr.Row():
        with gr.Column(scale=1):
            prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a red circle on a blue background",
                                elem_id="xyplot-prompt")
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="xyplot-negative-prompt")
            with gr.Row():
                x_axis = gr.Dropdown(axes, value="CFG scale", label="X axis", elem_id="xyplot-x-axis")
                x_values = gr.Textbox(value="3, 7, 12", label="X values", info="'3, 7, 12' or '10-30 (+10)'",
                                      elem_id="xyplot-x-values")
            with gr.Row():
                y_axis = gr.Dropdown(axes, value="Steps", label="Y axis", elem_id="xyplot-y-axis")
                y_values = gr.Textbox(value="10, 20", label="Y values", elem_id="xyplot-y-values")
            with gr.Row():
                sampler = gr.Dropdown(list(api.SAMPLER_NAMES), value="Euler a", label="Sampler",
                                      elem_id="xyplot-sampler")
                steps = gr.Slider(1, api.MAX_STEPS, value=20, step=1, label="Steps", elem_id="xyplot-steps")
                cfg = gr.Slider(0, api.MAX_CFG, value=7.0, step=0.5, label="CFG scale", elem_id="xyplot-cfg")
            with gr.Row():
                width = gr.Slider(api.MIN_SIZE, api.MAX_SIZE, value=ui.native_size, step=8, label="Width",
                                  elem_id="xyplot-width")
                height = gr.Slider(api.MIN_SIZE, api.MAX_SIZE, value=ui.native_size, step=8, label="Height",
                                   elem_id="xyplot-height")
                seed = gr.Number(value=-1, precision=0, label="Seed (-1 = random, same for every cell)",
                                 elem_id="xyplot-seed")
            with gr.Row():
                generate = gr.Button("Make grid", variant="primary", elem_id="xyplot-generate")
                stop = gr.Button("Interrupt", variant="stop", elem_id="xyplot-interrupt")
        with gr.Column(scale=1):
            status = gr.HTML("Ready.", elem_id="xyplot-status")
            grid_image = gr.Image(label="Grid", type="pil", interactive=False, format="png", elem_id="xyplot-grid",
                                  elem_classes=["pixelated"])
    running = gr.State({})

    def make(prompt_text, negative_text, x_name, x_text, y_name, y_text, sampler_name, steps_value, cfg_value,
             width_value, height_value, seed_value, model, state: dict):
        state["stop"], state["job"] = False, None
        try:
            xs = parse_values(x_name, x_text, api.RequestError)
            ys = parse_values(y_name, y_text, api.RequestError)
            base = api.Txt2ImgRequest(
                prompt=prompt_text or "", negative_prompt=negative_text or "", model=model or None,
                sampler=sampler_name, steps=int(steps_value), cfg_scale=float(cfg_value), width=int(width_value),
                height=int(height_value), seed=int(seed_value if seed_value is not None else -1),
                preview_method="off")
            cells = plan_cells(api, base, x_name, xs, y_name, ys)
        except (api.RequestError, ValueError, TypeError) as error:
            yield _status(f"⚠️ {error}"), gr.skip()
            return
        images: list[Any] = [None] * len(cells)
        try:
            for index, event, image in run_cells(api, cells, on_job=lambda job: state.update(job=job)):
                if state.get("stop"):
                    state["job"].cancel()
                if image is not None:
                    images[index] = image
                    yield _status(f"{index + 1}/{len(cells)} images done."), gr.skip()
                elif isinstance(event, api.Failed):
                    yield _status(f"⚠️ cell {index + 1} failed: {event.message}"), gr.skip()
                    return
                elif isinstance(event, api.Cancelled):
                    yield _status("Interrupted."), gr.skip()
                    return
        finally:
            if state.get("job") is not None and not state["job"].done.is_set():
                state["job"].cancel()
        rows = [[images[i] for i, c in enumerate(cells) if c.y_index == y] for y in range(len(ys))]
        x_labels = [label(x_name, v) if AXES[x_name] else "" for v in xs]
        y_labels = [label(y_name, v) if AXES[y_name] else "" for v in ys]
        grid = make_grid(rows, x_labels, y_labels)
        seed_is_axis = "Seed" in (x_name, y_name)
        seed = None if seed_is_axis else cells[0].request.seed
        settings = {"X/Y plot": f"X: {x_name} {x_text}; Y: {y_name} {y_text}", "Seed": seed,
                    "Sampler": sampler_name, "Steps": int(steps_value), "CFG scale": f"{float(cfg_value):g}"}
        path = api.save_image(grid, "xyplot", prompt_text or "", negative_text or "", settings)
        seed_text = "" if seed_is_axis else f", seed {seed}"
        yield _status(f"Done: {len(xs)}x{len(ys)} grid{seed_text}, saved as {path.name}."), grid

    def interrupt(state: dict):
        state["stop"] = True
        if state.get("job") is not None:
            state["job"].cancel()
        return _status("Interrupting…")

    generate.click(make, [prompt, negative, x_axis, x_values, y_axis, y_values, sampler, steps, cfg, width, height,
                          seed, ui.model, running], [status, grid_image],
                   concurrency_id="gpu", concurrency_limit=1, api_name="xyplot")
    stop.click(interrupt, running, status, queue=False, api_name=False)


def _status(text: str) -> str:
    return f'<div class="ldm-status"><span>{html.escape(text)}</span></div>'
