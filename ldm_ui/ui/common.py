"""Widgets and event plumbing every generation tab shares.

A tab builds its controls with `build_generation_controls`, its outputs with `build_output_panel`, turns widget
values into a typed request, and streams the job's events with `stream_job`, which yields Gradio updates.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import gradio as gr

from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.ui.seed_extras import seed_buttons, wire_seed_buttons
from ldm_ui.requests import (
    MAX_BATCH_COUNT, MAX_BATCH_SIZE, MAX_CFG, MAX_CLIP_SKIP, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, Cancelled,
    Failed, Finished, Output, Preview, Progress, Queued, RequestError, Started,
)
from ldm_ui.ui import prompt_tools

PREVIEW_DISPLAY_PX = 256
GPU = "gpu"  # every event that runs a job shares this concurrency group, as wide as the engine's concurrency


def gpu_slots(engine) -> int:
    """How many job-running events may run at once: 1 for the local engine, the replica count on Ray."""
    return getattr(engine, "concurrency", 1)


@dataclass
class GenerationControls:
    prompt: gr.Textbox
    negative_prompt: gr.Textbox
    sampler: gr.Dropdown
    steps: gr.Slider
    cfg_scale: gr.Slider
    width: gr.Slider
    height: gr.Slider
    seed: gr.Number
    batch_count: gr.Slider
    batch_size: gr.Slider
    clip_skip: gr.Slider
    generate: gr.Button
    interrupt: gr.Button
    seed_random: gr.Button | None = None  # 🎲 and ♻ beside the seed box
    seed_reuse: gr.Button | None = None
    styles: gr.Dropdown | None = None  # the styles picker (ui/styles_panel.py); Generate applies what it holds
    styles_file: Any = None

    def inputs(self) -> list[gr.components.Component]:
        """In the order of `generation_settings`' parameters."""
        return [self.prompt, self.negative_prompt, self.sampler, self.steps, self.cfg_scale, self.width,
                self.height, self.seed, self.batch_count, self.batch_size, self.clip_skip]


def generation_settings(prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count,
                        batch_size, clip_skip=None) -> dict[str, Any]:
    """Widget values -> request fields, with the numeric widgets' floats made whole."""
    return dict(prompt=prompt or "", negative_prompt=negative_prompt or "", sampler=sampler,
                steps=_whole(steps, "steps"), cfg_scale=float(cfg_scale), width=_whole(width, "width"),
                height=_whole(height, "height"), seed=_whole(seed, "seed"),
                batch_count=_whole(batch_count, "batch count"), batch_size=_whole(batch_size, "batch size"),
                clip_skip=None if clip_skip is None else _whole(clip_skip, "clip skip"))


def _whole(value: Any, name: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")) or number != int(number):
        raise RequestError(f"{name} must be a whole number, got {value!r}")
    return int(number)


@dataclass
class OutputPanel:
    preview: gr.Image
    status: gr.HTML
    gallery: gr.Gallery
    infotext: gr.Textbox
    outputs_state: gr.State  # the finished Outputs of this session's last job, for "send to" and infotext

    def outputs(self) -> list[gr.components.Component]:
        return [self.preview, self.status, self.gallery, self.infotext, self.outputs_state]


def build_generation_controls(tab: str, native_size: int, generate_label: str = "Generate",
                              prompt_placeholder: str = "a red circle on a blue background",
                              engine=None) -> GenerationControls:
    """`engine` adds a token counter under each prompt and the textual-inversion picker, and sets the clip skip
    slider to the app's --clip-skip."""
    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            prompt = gr.Textbox("", label="Prompt", lines=3, placeholder=prompt_placeholder, elem_id=f"{tab}-prompt")
            prompt_count = prompt_tools.build_token_counter(tab, "prompt")
            negative = gr.Textbox("", label="Negative prompt", lines=2, elem_id=f"{tab}-negative-prompt")
            negative_count = prompt_tools.build_token_counter(tab, "negative")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button(generate_label, variant="primary", size="lg", elem_id=f"{tab}-generate")
            interrupt = gr.Button("Interrupt", variant="stop", elem_id=f"{tab}-interrupt")
    with gr.Row():
        sampler = gr.Dropdown(list(SAMPLER_NAMES), value="Euler a", label="Sampler", elem_id=f"{tab}-sampler")
        steps = gr.Slider(1, MAX_STEPS, value=20, step=1, label="Sampling steps", elem_id=f"{tab}-steps")
    with gr.Row():
        width = gr.Slider(MIN_SIZE, MAX_SIZE, value=native_size, step=8, label="Width", elem_id=f"{tab}-width")
        height = gr.Slider(MIN_SIZE, MAX_SIZE, value=native_size, step=8, label="Height", elem_id=f"{tab}-height")
    with gr.Row():
        cfg = gr.Slider(0, MAX_CFG, value=7.0, step=0.5, label="CFG scale", elem_id=f"{tab}-cfg")
        clip_skip = gr.Slider(1, MAX_CLIP_SKIP, value=engine.config.clip_skip if engine else 1, step=1,
                              label="Clip skip", elem_id=f"{tab}-clip-skip",
                              info="text-encoder layer, from the end")
        with gr.Row(equal_height=True):
            seed = gr.Number(value=-1, precision=0, minimum=-1, maximum=MAX_SEED, label="Seed (-1 = random)",
                             elem_id=f"{tab}-seed", scale=4)
            seed_random, seed_reuse = seed_buttons(tab)
    with gr.Row():
        batch_count = gr.Slider(1, MAX_BATCH_COUNT, value=1, step=1, label="Batch count", elem_id=f"{tab}-batch-count")
        batch_size = gr.Slider(1, MAX_BATCH_SIZE, value=1, step=1, label="Batch size", elem_id=f"{tab}-batch-size")
    if engine is not None:
        prompt_tools.build_embedding_picker(tab, prompt, negative, engine)
        prompt_tools.wire_token_counter(engine, prompt, steps, prompt_count)
        prompt_tools.wire_token_counter(engine, negative, steps, negative_count)
    return GenerationControls(prompt, negative, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
                              clip_skip, generate, interrupt, seed_random, seed_reuse)


def build_output_panel(tab: str) -> OutputPanel:
    preview = gr.Image(label="Live preview", type="pil", interactive=False, height=PREVIEW_DISPLAY_PX,
                       elem_id=f"{tab}-preview", elem_classes=["pixelated"], buttons=[])
    status = gr.HTML(render_status("Ready."), elem_id=f"{tab}-status")
    gallery = gr.Gallery(label="Results", columns=4, height="auto", object_fit="contain", elem_id=f"{tab}-gallery",
                         elem_classes=["pixelated"], format="png")
    infotext = gr.Textbox(label="Generation parameters (infotext)", lines=3, interactive=False,
                          elem_id=f"{tab}-infotext")
    return OutputPanel(preview, status, gallery, infotext, gr.State([]))


def render_status(text: str, fraction: float | None = None, kind: str = "info") -> str:
    bar = ""
    if fraction is not None:
        bar = (f'<div class="ldm-progress"><div class="ldm-progress-fill" '
               f'style="width:{max(0.0, min(1.0, fraction)) * 100:.1f}%"></div></div>')
    return f'<div class="ldm-status ldm-status-{kind}">{bar}<span>{html.escape(text)}</span></div>'


def describe_progress(event: Progress) -> str:
    if event.message:
        return event.message
    batch = f"{event.unit} {event.batch_index + 1}/{event.batch_count} · " if event.batch_count > 1 else ""
    phase = f"{event.phase}: " if event.phase else ""
    return f"{batch}{phase}step {event.step}/{event.steps} · {event.it_per_s:.2f} it/s · ETA {format_seconds(event.eta_s)}"


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def gallery_item(output: Output) -> tuple[str, str]:
    width, height = output.image.size
    return output.path or output.image, f"{width}x{height} · seed {output.seed}"


@dataclass
class Session:
    """Per-browser-session job handle, kept in gr.State so one user's Interrupt reaches only their own job."""

    job: Any = None
    interrupted: bool = False
    history: list[Output] = field(default_factory=list)


def new_session_state() -> gr.State:
    return gr.State(Session())


def interrupt(session: Session) -> str:
    session.interrupted = True
    if session.job is not None:
        session.job.cancel()
        return render_status("Interrupting…", kind="warn")
    return render_status("Nothing is running.")


def mark_started(session: Session) -> Session:
    session.interrupted = False
    return session


def stream_job(engine, session: Session, make_request: Callable[[], Any],
               on_finished: Callable[[Finished], None] = lambda finished: None) -> Iterator[tuple]:
    """Submit a request and turn its events into (preview, status, gallery, infotext, outputs) updates;
    `on_finished` sees the Finished event (with its typed result) before its update is yielded."""
    skip = gr.skip()
    try:
        request = make_request()
        if session.interrupted:
            yield skip, render_status("Interrupted before it started.", kind="warn"), skip, skip, skip
            return
        job = engine.submit(request)
    except RequestError as error:
        yield skip, render_status(str(error), kind="error"), skip, skip, skip
        return
    session.job = job
    outputs: list[Output] = []
    try:
        for event in job.events():
            if isinstance(event, Queued):
                yield skip, render_status(f"Queued: {event.position} job(s) ahead.", 0.0), skip, skip, skip
            elif isinstance(event, Started):
                yield skip, render_status("Starting…", 0.0), skip, skip, skip
            elif isinstance(event, Progress):
                yield skip, render_status(describe_progress(event), event.fraction), skip, skip, skip
            elif isinstance(event, Preview):
                big = PREVIEW_DISPLAY_PX / max(event.image.size)
                shown = event.image.resize((round(event.image.width * big), round(event.image.height * big)), 0)
                yield shown, skip, skip, skip, skip
            elif isinstance(event, Output):
                outputs.append(event)
                yield (skip, skip, [gallery_item(o) for o in outputs], event.infotext, outputs)
            elif isinstance(event, Finished):
                session.history.extend(event.outputs)
                on_finished(event)
                seeds = sorted({o.seed for o in event.outputs})
                seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}"
                extra = event.summary
                text = f"Done: {len(event.outputs)} image(s), {seed_text}. {extra}".strip()
                yield (gr.update(value=None), render_status(text, 1.0, "ok"),
                       [gallery_item(o) for o in event.outputs],
                       event.outputs[-1].infotext if event.outputs else "", event.outputs)
            elif isinstance(event, Cancelled):
                text = f"Interrupted ({event.message}); {len(outputs)} image(s) finished before that."
                yield skip, render_status(text, kind="warn"), skip, skip, skip
            elif isinstance(event, Failed):
                yield skip, render_status(f"Failed: {event.message}", kind="error"), skip, skip, skip
    finally:
        if not job.done.is_set():  # the browser went away or Gradio closed us: stop the work too
            job.cancel()
        session.job = None


def wire_generation(ui, controls: GenerationControls, panel: OutputPanel, run: Callable, inputs: list,
                    api_name: str, outputs: list | None = None, submit_on_enter: bool = True) -> None:
    """Generate (and Enter in the prompt) -> clear the session's interrupt flag -> run the job in the one GPU slot;
    plus Interrupt and gallery selection. Only the Generate click is a public API endpoint, named `api_name`."""
    triggers = [(controls.generate.click, {"api_name": api_name})]
    if submit_on_enter:
        triggers.append((controls.prompt.submit, {"api_visibility": "private"}))
    for trigger, api in triggers:
        started = trigger(mark_started, ui.session, ui.session, queue=False, show_progress="hidden",
                          api_visibility="private")
        if controls.styles is not None:  # picked styles go into the prompt boxes first: the job sees the final prompt
            from ldm_ui.ui.styles_panel import apply_picked

            started = started.then(
                lambda p, n, s: apply_picked(controls.styles_file, p, n, s)[:3],
                [controls.prompt, controls.negative_prompt, controls.styles],
                [controls.prompt, controls.negative_prompt, controls.styles], queue=False, show_progress="hidden",
                api_visibility="private")
        started.then(
            run, inputs, outputs or panel.outputs(), concurrency_id=GPU, concurrency_limit=gpu_slots(ui.engine),
            show_progress="minimal", **api,
        )
    controls.interrupt.click(interrupt, ui.session, panel.status, queue=False, api_visibility="private")
    panel.gallery.select(infotext_of_selected, panel.outputs_state, panel.infotext, queue=False,
                         api_visibility="private")
    if controls.seed_random is not None:
        wire_seed_buttons(panel, controls.seed, controls.seed_random, controls.seed_reuse)


def infotext_of_selected(outputs: list[Output], event: gr.SelectData) -> str:
    if outputs and event is not None and 0 <= event.index < len(outputs):
        return outputs[event.index].infotext
    return gr.skip()


CSS = """
.pixelated img, .pixelated canvas { image-rendering: pixelated; }
.ldm-fill img { width: 100%; height: 100%; object-fit: contain; }
.ldm-status { font-size: 0.95em; padding: 4px 2px; }
.ldm-status-error span { color: #d33; font-weight: 600; }
.ldm-status-warn span { color: #c80; }
.ldm-status-ok span { color: #2a2; }
.ldm-progress { height: 8px; background: #8883; border-radius: 4px; margin-bottom: 4px; overflow: hidden; }
.ldm-progress-fill { height: 100%; background: #f97316; transition: width 0.2s; }
.ldm-token-counter { text-align: right; font-size: 0.8em; opacity: 0.7; margin-top: -6px; min-height: 0; }
.ldm-banner { background: #fde68a; color: #7c2d12; padding: 8px 12px; border-radius: 6px; font-weight: 600; }
"""
