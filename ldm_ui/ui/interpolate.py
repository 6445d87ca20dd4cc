"""The Interpolate tab: walk from prompt/seed/image A to B, frames arriving live, then a GIF and an MP4."""

from __future__ import annotations

import gradio as gr

from ldm_ui.requests import (
    EASINGS, INTERPOLATION_MODES, LATENT_MIXES, MAX_FPS, MAX_FRAMES, MAX_SEED, MIN_FRAMES, Finished,
    InterpolateRequest,
)
from ldm_ui.results import InterpolationResult
from ldm_ui.ui import prompt_tools
from ldm_ui.ui.common import (
    _whole, add_reuse_seed, build_generation_controls, build_output_panel, settings_from, stream_job, wire_generation,
)
from ldm_ui.ui.inputs import Input, InputTable
from ldm_ui.ui.number_fields import CheckedLaterNumber

DEFAULT_SAMPLER = "DPM++ 2M"  # deterministic: in-between frames of a seed walk change smoothly
MODE_HELP = {
    "prompts": "One seed; the text conditioning moves from prompt A to prompt B.",
    "seeds": "One prompt; the starting noise moves from seed A to seed B along a sphere (slerp).",
    "both": "Prompt A with seed A to prompt B with seed B.",
    "images": "Two pictures: their VAE latents are mixed and each frame decoded; a re-noise strength above 0 "
              "redraws each in-between with the prompt (SDEdit).",
}


def to_request(*, mode, prompt_b, seed_b, frames, easing, fps, ping_pong, latent_mix, strength, model,
               preview_method, preview_every, image_a=None, image_b=None, **values) -> InterpolateRequest:
    """values: the shared generation controls, by their InputTable names."""
    settings = settings_from(values)
    return InterpolateRequest(
        model=model or None, preview_method=preview_method, preview_every_n_steps=int(preview_every),
        mode=mode, prompt_b=prompt_b or "", seed_b=_whole(seed_b, "seed B"), frames=_whole(frames, "frames"),
        easing=easing, fps=float(fps), ping_pong=bool(ping_pong), image_a=_opened(image_a, "image A"),
        image_b=_opened(image_b, "image B"),
        latent_mix=latent_mix, strength=float(strength), **settings,
    )


def _opened(path, name: str):
    """An uploaded file through the one decode gate (ldm_ui/images.py), so a bomb is refused from its header."""
    from ldm_ui.images import load_image

    return None if path is None else load_image(path, name)


def mode_visibility(mode: str):
    """Prompt B (with its token counter), seed B and the image inputs appear only in the modes that use them."""
    with_prompt_b = mode in ("prompts", "both")
    return (gr.update(visible=with_prompt_b), gr.update(visible=with_prompt_b),
            gr.update(visible=mode in ("seeds", "both")), gr.update(visible=mode == "images"), MODE_HELP.get(mode, ""))


def is_skip(value) -> bool:
    return isinstance(value, dict) and value == {"__type__": "update"}


def build(ui) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            mode = gr.Radio(list(INTERPOLATION_MODES), value="prompts", label="Interpolate between",
                            elem_id="interpolate-mode")
            mode_help = gr.Markdown(MODE_HELP["prompts"], elem_id="interpolate-mode-help")
            controls = build_generation_controls("interpolate", ui.native_size, generate_label="Interpolate",
                                                 prompt_placeholder="a red circle on a white background",
                                                 engine=ui.engine)
            # this tab's own labels and defaults on the shared controls (read when the page config is built)
            controls.prompt.label = "Prompt A"
            controls.seed.label = "Seed A (-1 = random)"
            controls.sampler.value = DEFAULT_SAMPLER
            controls.sampler.info = "Ancestral samplers (Euler a, SDE) add new noise every step, which makes seed walks jumpy"
            controls.batch_count.visible = controls.batch_size.visible = False  # frames replace batches here
            with gr.Row():
                prompt_b = gr.Textbox("", label="Prompt B", lines=2, placeholder="a blue circle on a white background",
                                      elem_id="interpolate-prompt-b", scale=3)
                seed_b = CheckedLaterNumber(value=-1, precision=0, minimum=-1, maximum=MAX_SEED,
                                            label="Seed B (-1 = random)", elem_id="interpolate-seed-b",
                                            visible=False, scale=1)
            prompt_b_count = prompt_tools.build_token_counter("interpolate", "prompt-b")
            prompt_tools.wire_token_counter(ui.engine, prompt_b, controls.steps, prompt_b_count)
            with gr.Group(visible=False) as images_group:
                with gr.Row():
                    image_a = gr.Image(label="Image A", type="filepath", image_mode=None,
                                       sources=["upload", "clipboard"], height=200, elem_id="interpolate-image-a",
                                       elem_classes=["pixelated", "ldm-fill"])
                    image_b = gr.Image(label="Image B", type="filepath", image_mode=None,
                                       sources=["upload", "clipboard"], height=200, elem_id="interpolate-image-b",
                                       elem_classes=["pixelated", "ldm-fill"])
                with gr.Row():
                    latent_mix = gr.Radio(list(LATENT_MIXES), value="slerp", label="Latent mix",
                                          elem_id="interpolate-latent-mix")
                    strength = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Re-noise strength (0 = off)",
                                         info="above 0, each frame is noised this far and denoised with prompt A",
                                         elem_id="interpolate-strength")
            with gr.Row():
                frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, value=8, step=1, label="Frames",
                                   elem_id="interpolate-frames")
                easing = gr.Radio(list(EASINGS), value="linear", label="Easing", elem_id="interpolate-easing")
            with gr.Row():
                fps = gr.Slider(1, MAX_FPS, value=8, step=1, label="Frame rate (fps)", elem_id="interpolate-fps",
                                info="GIF delays are whole 1/100 s, so its rate is rounded")
                ping_pong = gr.Checkbox(value=False, label="Ping-pong loop (play forward, then back)",
                                        elem_id="interpolate-ping-pong")
        with gr.Column(scale=1):
            panel = build_output_panel("interpolate")
            panel.gallery.label = "Frames"
            with gr.Row():
                video = gr.Video(label="MP4", interactive=False, loop=True, autoplay=True, height=256,
                                 elem_id="interpolate-video")
                gif = gr.Image(label="GIF", type="filepath", interactive=False, height=256,
                               elem_id="interpolate-gif", elem_classes=["pixelated", "ldm-fill"])
            files = gr.File(label="Download the animation", file_count="multiple", interactive=False,
                            elem_id="interpolate-files")
            add_reuse_seed("interpolate", controls, panel)
    ui.register_tab("interpolate", controls, panel)

    table = InputTable(
        [("mode", mode), ("prompt_b", prompt_b), ("seed_b", seed_b), ("frames", frames), ("easing", easing),
         ("fps", fps), ("ping_pong", ping_pong), ("latent_mix", latent_mix), ("strength", strength)],
        controls.fields(), ui.shared_fields(),
        # the images come last with a default: API callers of the other modes leave them out
        [Input("image_a", image_a, None), Input("image_b", image_b, None)])

    def interpolate(values):
        skip = gr.skip()
        latest = [None] * 5  # the newest real value of each panel output, for the final, complete update
        first = True
        finished: list[Finished] = []  # the run's GIF and MP4 exist only once every frame is done
        session = values.pop("session")
        for update in stream_job(ui.engine, session, lambda: to_request(**values), "interpolate",
                                 on_finished=finished.append):
            latest = [old if is_skip(new) else new for old, new in zip(latest, update)]
            # a new run clears the last run's animation
            yield (*update, *((None, None, None) if first else (skip, skip, skip)))
            first = False
        if finished and isinstance(finished[0].result, InterpolationResult):
            # repeat everything with the animation: an API caller receives only this last update
            gif_path, mp4_path = str(finished[0].result.gif), str(finished[0].result.mp4)
            yield (None, *latest[1:], mp4_path, gif_path, [gif_path, mp4_path])

    wire_generation(ui, "interpolate", controls, panel, table, interpolate, "interpolate",
                    outputs=[*panel.outputs(), video, gif, files], submit_on_enter=False)
    mode.change(mode_visibility, mode, [prompt_b, prompt_b_count, seed_b, images_group, mode_help], queue=False,
                api_name=False)
