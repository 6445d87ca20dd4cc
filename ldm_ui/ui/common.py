"""Widgets and event plumbing every generation tab shares.

A tab builds its controls with `build_generation_controls`, its outputs with `build_output_panel`, turns widget
values into a typed request, and streams the job's events with `stream_job`, which yields Gradio updates.
"""

from __future__ import annotations

import html
import threading
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import gradio as gr

from ldm_ui.engine.engine import JobFailed
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.metadata import parse_infotext
from ldm_ui.ui.seed_extras import seed_buttons, wire_seed_buttons
from ldm_ui.requests import (
    MAX_BATCH_COUNT, MAX_BATCH_SIZE, MAX_CFG, MAX_CLIP_SKIP, MAX_SEED, MAX_SIZE, MAX_STEPS, MIN_SIZE, Cancelled,
    Failed, Finished, Output, Preview, Progress, Queued, RequestError, Started,
)
from ldm_ui.ui import family_controls, prompt_tools
from ldm_ui.ui.inputs import InputTable
from ldm_ui.ui.job_stream import UrgentEvents, event_batches
from ldm_ui.ui.number_fields import CheckedLaterNumber, CheckedLaterSlider

PREVIEW_DISPLAY_PX = 256
DEFAULT_TAB = "txt2img"


GENERATION_FIELDS = ("prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "width", "height", "seed",
                     "batch_count", "batch_size", "clip_skip")  # the public API's parameter names and order


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
    skip: gr.Button
    seed_random: gr.Button | None = None  # 🎲 and ♻ beside the seed box
    seed_reuse: gr.Button | None = None
    styles: gr.Dropdown | None = None  # the styles picker (ui/styles_panel.py); Generate applies what it holds
    styles_file: Any = None
    family_note: gr.Markdown | None = None  # what the loaded model's family leaves out (ui/family_controls.py)

    def fields(self) -> list[tuple[str, gr.components.Component]]:
        """(name, widget) rows for a tab's InputTable, named as `generation_settings` takes them."""
        return [(name, getattr(self, name)) for name in GENERATION_FIELDS]


def generation_settings(*, prompt, negative_prompt, sampler, steps, cfg_scale, width, height, seed, batch_count,
                        batch_size, clip_skip=None) -> dict[str, Any]:
    """Widget values -> request fields, with the numeric widgets' floats made whole."""
    return dict(prompt=prompt or "", negative_prompt=negative_prompt or "", sampler=sampler,
                steps=_whole(steps, "steps"), cfg_scale=float(cfg_scale), width=_whole(width, "width"),
                height=_whole(height, "height"), seed=_whole(seed, "seed"),
                batch_count=_whole(batch_count, "batch count"), batch_size=_whole(batch_size, "batch size"),
                clip_skip=None if clip_skip is None else _whole(clip_skip, "clip skip"))


def settings_from(values: dict[str, Any]) -> dict[str, Any]:
    """`generation_settings` of the shared controls' values in a tab's values dict."""
    return generation_settings(**{name: values[name] for name in GENERATION_FIELDS})


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
    selected: gr.State  # the gallery index the user clicked in those outputs, None until they click one
    chosen_path: gr.State | None = None  # the clicked result's path, for the seed buttons (seed_extras.py)

    def outputs(self) -> list[gr.components.Component]:
        return [self.preview, self.status, self.gallery, self.infotext, self.outputs_state]


def build_generation_controls(tab: str, native_size: int, generate_label: str = "Generate",
                              prompt_placeholder: str = "a red circle on a blue background",
                              engine=None) -> GenerationControls:
    """`engine` adds a token counter under each prompt and the textual-inversion picker, and sets the clip skip
    slider to the app's --clip-skip."""
    family_note = family_controls.build_note(tab)
    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            prompt = gr.Textbox("", label="Prompt", lines=3, placeholder=prompt_placeholder, elem_id=f"{tab}-prompt")
            prompt_count = prompt_tools.build_token_counter(tab, "prompt")
            negative = gr.Textbox("", label="Negative prompt", lines=2, elem_id=f"{tab}-negative-prompt")
            negative_count = prompt_tools.build_token_counter(tab, "negative")
        with gr.Column(scale=1, min_width=160):
            generate = gr.Button(generate_label, variant="primary", size="lg", elem_id=f"{tab}-generate")
            with gr.Row():
                interrupt = gr.Button("Interrupt", variant="stop", size="md", elem_id=f"{tab}-interrupt", min_width=70)
                skip = gr.Button("Skip", variant="secondary", size="md", elem_id=f"{tab}-skip", min_width=70)
    with gr.Row():
        # a custom value reaches the engine, which names the samplers that fit (PNG info or a preset may bring a
        # sampler outside a flow-matching model's shorter list; Gradio alone would refuse it without saying why)
        sampler = gr.Dropdown(list(SAMPLER_NAMES), value="Euler a", label="Sampler", elem_id=f"{tab}-sampler",
                              allow_custom_value=True)
        steps = CheckedLaterSlider(1, MAX_STEPS, value=20, step=1, label="Sampling steps", elem_id=f"{tab}-steps")
    with gr.Row():
        width = CheckedLaterSlider(MIN_SIZE, MAX_SIZE, value=native_size, step=8, label="Width", elem_id=f"{tab}-width")
        height = CheckedLaterSlider(MIN_SIZE, MAX_SIZE, value=native_size, step=8, label="Height",
                                    elem_id=f"{tab}-height")
    with gr.Row():
        cfg = CheckedLaterSlider(0, MAX_CFG, value=7.0, step=0.5, label="CFG scale", elem_id=f"{tab}-cfg")
        clip_skip = CheckedLaterSlider(1, MAX_CLIP_SKIP, value=engine.config.clip_skip if engine else 1, step=1,
                                       label="Clip skip", elem_id=f"{tab}-clip-skip",
                                       info="text-encoder layer, from the end")
        with gr.Row(equal_height=True):
            seed = CheckedLaterNumber(value=-1, precision=0, minimum=-1, maximum=MAX_SEED,
                                      label="Seed (-1 = random)", elem_id=f"{tab}-seed", scale=4)
            seed_random, seed_reuse = seed_buttons(tab)
    with gr.Row():
        batch_count = CheckedLaterSlider(1, MAX_BATCH_COUNT, value=1, step=1, label="Batch count",
                                         elem_id=f"{tab}-batch-count")
        batch_size = CheckedLaterSlider(1, MAX_BATCH_SIZE, value=1, step=1, label="Batch size",
                                        elem_id=f"{tab}-batch-size")
    if engine is not None:
        prompt_tools.build_embedding_picker(tab, prompt, negative, engine)
        prompt_tools.wire_token_counter(engine, prompt, steps, prompt_count)
        prompt_tools.wire_token_counter(engine, negative, steps, negative_count)
    return GenerationControls(prompt, negative, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
                              clip_skip, generate, interrupt, skip, seed_random, seed_reuse, family_note=family_note)


def build_output_panel(tab: str) -> OutputPanel:
    preview = gr.Image(label="Live preview", type="pil", interactive=False, height=PREVIEW_DISPLAY_PX,
                       elem_id=f"{tab}-preview", elem_classes=["pixelated"], buttons=[])
    status = gr.HTML(render_status("Ready."), elem_id=f"{tab}-status")
    gallery = gr.Gallery(label="Results", columns=4, height="auto", object_fit="contain", elem_id=f"{tab}-gallery",
                         elem_classes=["pixelated"], format="png")
    infotext = gr.Textbox(label="Generation parameters (infotext)", lines=3, interactive=False,
                          elem_id=f"{tab}-infotext")
    return OutputPanel(preview, status, gallery, infotext, gr.State([]), gr.State(None))


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
    return output.path or output.image, f"{width}x{height} · {seed_caption(output)}"


def seed_caption(output: Output) -> str:
    """"seed 42"; an interpolation frame says which frame it is, and an in-between frame of a seed walk says it
    mixes two seeds' noise (its infotext's Seed is seed A: alone, that would caption every frame with seed A)."""
    if "Interpolation frame:" not in output.infotext:
        return f"seed {output.seed}"
    settings = parse_infotext(output.infotext).settings
    frame, weight = settings.get("Interpolation frame", "?"), float(settings.get("Interpolation weight", 0) or 0)
    seed_b = settings.get("Seed B")
    if seed_b and settings.get("Interpolation") in ("seeds", "both") and 0 < weight < 1:
        return f"frame {frame} · seed {output.seed}→{seed_b} at {weight:.0%}"
    return f"frame {frame} · seed {output.seed}"


@dataclass
class Session:
    """Per-browser-session job handles, kept in gr.State so one user's Interrupt reaches only their own jobs.

    `jobs` holds each tab's running (or queued) job: one per tab, so a double click cannot queue two.
    """

    jobs: dict[str, Any] = field(default_factory=dict)
    interrupted: set[str] = field(default_factory=set)  # tabs interrupted while their request was being built
    history: list[Output] = field(default_factory=list)


CLAIMED = "claimed"  # a tab's job slot while its request is being built
_claim_lock = threading.Lock()  # a session's State is shared by its concurrent handlers: claim a tab atomically


def new_session_state() -> gr.State:
    return gr.State(Session())


def interrupt(session: Session, tab: str = DEFAULT_TAB) -> str:
    """Stop this session's job in `tab`. An Interrupt that comes before the Generate handler has claimed the tab
    (Generate's queued step has not run yet) is remembered and stops that job as soon as it exists; the next
    Generate click clears it (`begin_generate`), so a stale Interrupt never stops a later job."""
    with _claim_lock:
        job = session.jobs.get(tab)
        if job is None or job is CLAIMED:
            session.interrupted.add(tab)  # stops the job before it is submitted, or right after
            if job is None:
                return render_status("Interrupting… (stops the job as soon as it starts)", kind="warn")
            return render_status("Interrupting…", kind="warn")
    job.cancel()
    if job.done.is_set():  # it left the queue at once: its stream already shows that, which must stay
        return gr.skip()
    return render_status("Interrupting…", kind="warn")


def begin_generate(session: Session, tab: str = DEFAULT_TAB) -> None:
    """The Generate click's first, unqueued step: an Interrupt from before this click does not stop the new job."""
    with _claim_lock:
        if session.jobs.get(tab) is None:
            session.interrupted.discard(tab)


def skip_image(session: Session, tab: str = DEFAULT_TAB) -> str:
    """End the image being sampled (a batch, a frame) and go on with the next; the job itself goes on."""
    job = session.jobs.get(tab)
    if job is None or job is CLAIMED:
        return gr.skip()
    job.skip()
    return render_status("Skipping the current image…", kind="warn")


def stream_job(engine, session: Session, make_request: Callable[[], Any], tab: str = DEFAULT_TAB,
               on_finished: Callable[[Finished], None] = lambda finished: None) -> Iterator[tuple]:
    """Submit a request and turn its coalesced events into (preview, status, gallery, infotext, outputs) updates;
    `on_finished` sees the Finished event (with its typed result) before its update is yielded.

    Any failure to build the request (a bad number, an upload that is not an image) is one line in the status;
    the previous results stay. While this tab already has a job, a second Generate does nothing.
    """
    skip = gr.skip()
    with _claim_lock:
        if session.jobs.get(tab) is not None:
            return
        session.jobs[tab] = CLAIMED  # an Interrupt since this Generate click (session.interrupted) stops this job
    job = None
    try:
        try:
            request = make_request()
        except Exception as error:  # noqa: BLE001 - a bad value or upload is the user's to fix: one line, results kept
            yield skip, render_status(one_line(error, engine.config), kind="error"), skip, skip, skip
            return
        if tab in session.interrupted:
            yield skip, render_status("Interrupted before it started.", kind="warn"), skip, skip, skip
            return
        with UrgentEvents(engine, request) as urgent:
            try:
                job = engine.submit(request)
            except RequestError as error:  # an unknown model
                yield skip, render_status(one_line(error, engine.config), kind="error"), skip, skip, skip
                return
            with _claim_lock:
                session.jobs[tab] = job
                interrupted = tab in session.interrupted
            if interrupted:  # Interrupt came while the request was being built or submitted
                job.cancel()
            yield from _job_updates(job, session, urgent.event, on_finished, engine.config)
    finally:
        if job is not None and not job.done.is_set():  # the browser went away or Gradio closed us: stop the work
            job.cancel()
        session.jobs.pop(tab, None)
        session.interrupted.discard(tab)


def one_line(error: BaseException, config=None) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    text = text if isinstance(error, (RequestError, JobFailed)) else f"{type(error).__name__}: {text}"
    return without_server_paths(text, config)


def without_server_paths(text: str, config=None) -> str:
    """The app's folders by their short names: a user needs "models/diffusers", not where the server keeps it."""
    if config is None:
        return text
    folders = [(config.models_dir, "models"), (config.outputs_dir, "outputs"), (config.cache_dir, "cache")]
    for folder, name in sorted(folders, key=lambda pair: -len(str(pair[0]))):
        text = text.replace(str(Path(folder).resolve()), name).replace(str(folder), name)
    return text


def _job_updates(job, session: Session, urgent, on_finished: Callable[[Finished], None], config) -> Iterator[tuple]:
    skip = gr.skip()
    outputs: list[Output] = []
    progress: Progress | None = None
    for batch in event_batches(job, urgent):
        preview = status = gallery = infotext = shown_outputs = skip
        for event in batch:
            if isinstance(event, Queued):
                status = render_status(f"Queued: {event.position} job(s) ahead.", 0.0)
            elif isinstance(event, Started):
                status = render_status(event.message or "Starting…", 0.0)
            elif isinstance(event, Progress):
                if event.steps:
                    progress = event
                text = describe_progress(event)
                status = render_status(f"Interrupting… ({text})" if job.cancel_requested else text, event.fraction,
                                       "warn" if job.cancel_requested else "info")
            elif isinstance(event, Preview):
                big = PREVIEW_DISPLAY_PX / max(event.image.size)
                preview = event.image.resize((round(event.image.width * big), round(event.image.height * big)), 0)
            elif isinstance(event, Output):
                outputs.append(event)
                gallery, infotext, shown_outputs = [gallery_item(o) for o in outputs], event.infotext, list(outputs)
            elif isinstance(event, Finished):
                session.history.extend(event.outputs)
                on_finished(event)
                done = without_server_paths(describe_finished(event), config)  # outputs/..., not the server's path
                preview, status = gr.update(value=None), render_status(done, 1.0, "ok")
                gallery = [gallery_item(o) for o in event.outputs]
                infotext = event.outputs[-1].infotext if event.outputs else ""
                shown_outputs = event.outputs
            elif isinstance(event, Cancelled):
                status = render_status(describe_cancelled(event, progress, len(outputs)), kind="warn")
            elif isinstance(event, Failed):
                status = render_status(f"Failed: {without_server_paths(event.message, config)}", kind="error")
        yield preview, status, gallery, infotext, shown_outputs


def describe_finished(event: Finished) -> str:
    seeds = sorted({o.seed for o in event.outputs})
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}–{seeds[-1]}" if seeds else "no seed"
    return f"Done: {len(event.outputs)} image(s), {seed_text}. {event.summary}".strip()


def describe_cancelled(event: Cancelled, progress: Progress | None, finished: int) -> str:
    """"Interrupted at step 20/150", or the engine's reason when the job never started (removed from the queue)."""
    done = f"; {finished} image(s) finished before that" if finished else ""
    if progress is None:
        reason = event.message or "interrupted"
        if reason == "removed from the queue":  # the user's Interrupt while the job waited its turn
            reason = "interrupted: removed from the queue before it started"
        return f"{reason[0].upper()}{reason[1:]}{done}."
    batch = f" of {progress.unit} {progress.batch_index + 1}/{progress.batch_count}" if progress.batch_count > 1 else ""
    return f"Interrupted at step {progress.step}/{progress.steps}{batch}{done}."


def job_runner(ui, tab: str, to_request: Callable[..., Any]) -> Callable[[dict], Iterator[tuple]]:
    """run(values) for wire_generation: the session from the values, the rest into to_request(**values)."""
    def run(values: dict) -> Iterator[tuple]:
        session = values.pop("session")
        yield from stream_job(ui.engine, session, lambda: to_request(**values), tab)

    run.__name__ = tab
    return run


def wire_generation(ui, tab: str, controls: GenerationControls, panel: OutputPanel, table: InputTable,
                    run: Callable[[dict], Iterator], api_name: str, outputs: list | None = None,
                    submit_on_enter: bool = True) -> None:
    """Generate (and Enter in the prompt) -> the button shows the job is running (and an Interrupt from before
    this click is forgotten) -> picked styles go into the prompt boxes -> run the job -> the button is back once
    the tab has no job. The engine's queue orders the jobs, so handlers run concurrently and each shows its own
    place in that queue. Only the Generate click is a public API endpoint, named `api_name`, with the table's
    names as its parameters. Ctrl+Enter in the tab clicks Generate and Escape clicks Interrupt (KEYBOARD_JS)."""
    ui.input_tables[tab] = table
    label = controls.generate.value
    triggers = [(controls.generate.click, {"api_name": api_name})]
    if submit_on_enter:
        triggers.append((controls.prompt.submit, {"api_visibility": "private"}))
    for trigger, api in triggers:
        started = trigger(
            # a new job's results replace the ones a selection pointed into
            lambda session: _busy_button(session, tab, label), ui.session,
            [controls.generate, panel.selected], queue=False, show_progress="hidden", api_visibility="private",
        )
        if controls.styles is not None:  # picked styles go into the prompt boxes first: the job sees the final prompt
            from ldm_ui.ui.styles_panel import apply_picked

            started = started.then(
                lambda p, n, s: apply_picked(controls.styles_file, p, n, s)[:3],
                [controls.prompt, controls.negative_prompt, controls.styles],
                [controls.prompt, controls.negative_prompt, controls.styles], queue=False, show_progress="hidden",
                api_visibility="private")
        started.then(
            table.handler(run), table.components, outputs or panel.outputs(), concurrency_limit=None,
            show_progress="hidden", **api,
        ).then(
            # a double click's second handler returns at once: the button stays busy while the first job runs
            lambda session: gr.skip() if tab in session.jobs else gr.update(interactive=True, value=label),
            ui.session, controls.generate, queue=False, show_progress="hidden", api_visibility="private",
        )
    controls.interrupt.click(lambda session: interrupt(session, tab), ui.session, panel.status, queue=False,
                             api_visibility="private")
    controls.skip.click(lambda session: skip_image(session, tab), ui.session, panel.status, queue=False,
                        api_visibility="private")
    panel.gallery.select(infotext_of_selected, panel.outputs_state, panel.infotext, queue=False,
                         api_visibility="private")
    panel.gallery.select(selected_index, None, panel.selected, queue=False, api_visibility="private",
                         show_progress="hidden")
    if controls.seed_random is not None:
        wire_seed_buttons(panel, controls.seed, controls.seed_random, controls.seed_reuse)


def _busy_button(session: Session, tab: str, label: str) -> tuple:
    begin_generate(session, tab)
    return gr.update(interactive=False, value=f"{label} (running…)"), None


def chosen_output(outputs: list[Output], selected: int | None) -> Output | None:
    """The result the user clicked in the gallery, else the last one."""
    if not outputs:
        return None
    if selected is not None and 0 <= selected < len(outputs):
        return outputs[selected]
    return outputs[-1]


def selected_index(event: gr.SelectData) -> int:
    return event.index


def add_reuse_seed(tab: str, controls: GenerationControls, panel: OutputPanel) -> gr.Button:
    """'♻ Reuse seed': the seed of the result selected in the gallery (the last one if none is) into the seed field."""
    button = gr.Button("♻ Reuse seed", size="sm", elem_id=f"{tab}-reuse-seed")

    def reuse(outputs: list[Output], index: int | None):
        output = chosen_output(outputs, index)
        return output.seed if output is not None else gr.skip()

    button.click(reuse, [panel.outputs_state, panel.selected], controls.seed, queue=False, api_visibility="private")
    return button


def infotext_of_selected(outputs: list[Output], event: gr.SelectData) -> str:
    if outputs and event is not None and 0 <= event.index < len(outputs):
        return outputs[event.index].infotext
    return gr.skip()


KEYBOARD_JS = """
() => {
  // Ctrl+Enter / Cmd+Enter: the visible tab's Generate; Escape: its Interrupt (Enter in a prompt is a newline)
  const visible = (selector) => [...document.querySelectorAll(selector)].find((el) => el.offsetParent !== null);
  document.addEventListener("keydown", (event) => {
    let button = null;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      button = visible("button[id$='-generate'], button#inspector-run");
    } else if (event.key === "Escape") {
      button = visible("button[id$='-interrupt']");
    }
    if (button && !button.disabled) {
      event.preventDefault();
      if (document.activeElement && document.activeElement.blur) document.activeElement.blur();  // commit edits
      setTimeout(() => button.click(), 0);
    }
  }, true);
}
"""

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
/* gallery captions in full (Gradio cuts them at 80% of a thumbnail): wrapped over the picture's foot */
.pixelated .caption-label.caption-label { white-space: normal; overflow: visible; text-overflow: clip;
  max-width: calc(100% - 2 * var(--block-label-margin)); left: var(--block-label-margin); opacity: 0.85; }
.ldm-banner { background: #fde68a; color: #7c2d12; padding: 8px 12px; border-radius: 6px; font-weight: 600; }
"""
