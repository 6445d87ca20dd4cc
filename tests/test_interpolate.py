"""Latent interpolation: endpoints equal txt2img, slerp keeps the noise norm, files and animations as asked."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image, ImageDraw

from ldm_ui.config import PROJECT_ROOT, AppConfig
from ldm_ui.engine.latent_math import frame_positions, lerp, slerp
from ldm_ui.metadata import parse_infotext, read_png_parameters
from ldm_ui.requests import Cancelled, InterpolateRequest, Output, RequestError, Txt2ImgRequest

DEMO_DIR = PROJECT_ROOT / "models" / "diffusers" / "demo-shapes"
needs_demo = pytest.mark.skipif(not (DEMO_DIR / "model_index.json").is_file(),
                                reason=f"the demo model is not trained yet ({DEMO_DIR} does not exist)")
FAST = dict(steps=3, cfg_scale=5.0)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def shape_image(color, background, size=64) -> Image.Image:
    image = Image.new("RGB", (size, size), background)
    ImageDraw.Draw(image).ellipse((size // 4, size // 4, 3 * size // 4, 3 * size // 4), fill=color)
    return image


@pytest.mark.parametrize("mode, sampler", [("prompts", "Euler a"), ("seeds", "Euler a"), ("both", "DPM++ 2M")])
def test_first_and_last_frames_are_the_txt2img_images_of_the_endpoints(engine, mode, sampler):
    prompt_a, prompt_b = "a red circle", "a blue square"
    seed_a, seed_b = 11, 12
    request = InterpolateRequest(mode=mode, prompt=prompt_a, prompt_b=prompt_b, seed=seed_a, seed_b=seed_b,
                                 frames=3, sampler=sampler, negative_prompt="blurry", **FAST)
    finished = engine.generate(request, timeout=120)
    end_prompt = prompt_b if mode in ("prompts", "both") else prompt_a
    end_seed = seed_b if mode in ("seeds", "both") else seed_a
    same = dict(sampler=sampler, negative_prompt="blurry", **FAST)
    first = engine.generate(Txt2ImgRequest(prompt=prompt_a, seed=seed_a, **same), timeout=60).images[0]
    last = engine.generate(Txt2ImgRequest(prompt=end_prompt, seed=end_seed, **same), timeout=60).images[0]
    frames = finished.images
    assert len(frames) == 3
    np.testing.assert_array_equal(pixels(frames[0]), pixels(first))
    np.testing.assert_array_equal(pixels(frames[-1]), pixels(last))
    assert not np.array_equal(pixels(frames[1]), pixels(frames[0]))  # the middle frame is an in-between
    # the last frame's infotext is endpoint B's, so pasting it into txt2img reproduces that frame
    parsed = parse_infotext(read_png_parameters(Image.open(finished.outputs[-1].path)))
    assert parsed.prompt == end_prompt and parsed.get_int("Seed") == end_seed


def test_frames_and_animation_are_saved_per_run_with_infotext(engine, app_config):
    request = InterpolateRequest(mode="prompts", prompt="a red circle", prompt_b="a blue circle", seed=5,
                                 frames=4, easing="ease-in-out", **FAST)
    first_run = engine.generate(request, timeout=120)
    second_run = engine.generate(request, timeout=120)
    folder = Path(first_run.result.folder)
    assert folder.parent.parent == app_config.outputs_dir / "interpolate"
    assert folder != Path(second_run.result.folder) and folder.parent == Path(second_run.result.folder).parent
    saved = sorted(folder.glob("*.png"))
    assert [str(p) for p in saved] == [o.path for o in first_run.outputs]
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in saved]
                                                              + ["interpolation.gif", "interpolation.mp4"])
    weights = []
    for number, path in enumerate(saved, start=1):
        info = parse_infotext(read_png_parameters(Image.open(path)))
        assert info.settings["Interpolation"] == "prompts"
        assert info.settings["Interpolation frame"] == f"{number}/4"
        assert info.settings["Easing"] == "ease-in-out" and info.get_int("Seed") == 5
        weights.append(info.get_float("Interpolation weight"))
    # ease-in-out: the in-between weights sit closer to the ends than linear's 1/3 and 2/3
    assert weights[0] == 0 and weights[-1] == 1 and weights[1] < 1 / 3 and weights[2] > 2 / 3
    # identical requests give identical frames
    for a, b in zip(first_run.images, second_run.images):
        np.testing.assert_array_equal(pixels(a), pixels(b))


def test_slerp_keeps_the_noise_norm_and_lerp_does_not():
    shape = (1, 4, 64, 64)  # the initial noise of a 512x512 SD image
    a = randn_tensor(shape, generator=[torch.Generator("cpu").manual_seed(1)], dtype=torch.float32)
    b = randn_tensor(shape, generator=[torch.Generator("cpu").manual_seed(2)], dtype=torch.float32)
    low, high = sorted([float(a.norm()), float(b.norm())])
    positions = frame_positions(8, "linear")
    slerp_norms = [float(slerp(a, b, t).norm()) for t in positions]
    lerp_norms = [float(lerp(a, b, t).norm()) for t in positions]
    assert all(low * 0.99 <= n <= high * 1.01 for n in slerp_norms), slerp_norms
    # lerp of two independent noises shrinks toward 1/sqrt(2) of the norm in the middle: washed-out frames
    middle = lerp(a, b, 0.5).norm() / ((low + high) / 2)
    assert 0.68 < middle < 0.73
    assert min(lerp_norms) < low * 0.9
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)


def test_images_mode_endpoints_are_the_vae_reconstructions_of_the_inputs(engine):
    image_a = shape_image("red", "white", 80)  # not the model's size: cropped and resized to 64x64
    image_b = shape_image("blue", "black")
    request = InterpolateRequest(mode="images", prompt="", image_a=image_a, image_b=image_b, frames=3,
                                 latent_mix="lerp", seed=3, **FAST)
    frames = engine.generate(request, timeout=120).images
    pipe = engine.models.current.pipe
    for frame, source in ((frames[0], image_a.resize((64, 64), Image.Resampling.LANCZOS)), (frames[-1], image_b)):
        with torch.no_grad():
            x = pipe.image_processor.preprocess(source)
            reconstruction = pipe.vae.decode(pipe.vae.encode(x).latent_dist.mean).sample
        expected = pipe.image_processor.postprocess(reconstruction, output_type="pil")[0]
        assert np.abs(pixels(frame) - pixels(expected)).max() <= 1
    # the re-noised (SDEdit) variant runs the img2img pipeline and records its strength
    renoised = engine.generate(request.with_changes(strength=0.5, steps=4, latent_mix="slerp"), timeout=120)
    assert len(renoised.outputs) == 3
    assert "Denoising strength: 0.5" in renoised.outputs[1].infotext and "Latent mix: slerp" in renoised.outputs[1].infotext


@pytest.mark.parametrize("frames, fps, ping_pong, shown", [(4, 5, True, 6), (3, 12, False, 3)])
def test_gif_and_mp4_have_the_requested_frames_and_rate(engine, frames, fps, ping_pong, shown):
    request = InterpolateRequest(mode="seeds", prompt="a red circle", seed=1, seed_b=2, frames=frames, fps=fps,
                                 ping_pong=ping_pong, steps=2)
    finished = engine.generate(request, timeout=120)
    gif = Image.open(finished.result.gif)
    assert gif.n_frames == shown
    delays = []
    for index in range(gif.n_frames):
        gif.seek(index)
        delays.append(gif.info["duration"])
    assert set(delays) == {round(100 / fps) * 10}  # GIF delays are whole 1/100 s: 5 fps -> 200 ms, 12 -> 80 ms
    reader = imageio_ffmpeg.read_frames(str(finished.result.mp4))
    meta = next(reader)
    decoded = list(reader)
    assert len(decoded) == shown and meta["fps"] == pytest.approx(fps, rel=1e-3)
    assert tuple(meta["size"]) == (64, 64)
    if ping_pong:  # forward then back, without repeating either end
        gif.seek(4)
        back = np.asarray(gif.convert("RGB"), dtype=np.int16)
        assert np.abs(back - pixels(finished.images[2])).mean() < 8  # GIF palette quantization


def test_interrupt_within_a_frame_keeps_finished_frames_and_writes_no_animation(engine, app_config):
    steps_seen = []

    def stop_in_second_frame(info):
        steps_seen.append(info.step)
        if len(steps_seen) == 5:  # frame 1 has 3 steps; this is step 2 of frame 2
            info.stop = True

    engine.step_hooks.append(stop_in_second_frame)
    job = engine.submit(InterpolateRequest(mode="prompts", prompt="a red circle", prompt_b="a blue circle",
                                           seed=1, frames=5, **FAST))
    events = list(job.events(timeout=120))
    assert isinstance(events[-1], Cancelled)
    outputs = [e for e in events if isinstance(e, Output)]
    assert len(outputs) == 1
    folder = Path(outputs[0].path).parent
    assert sorted(p.name for p in folder.iterdir()) == [Path(outputs[0].path).name]


@pytest.mark.parametrize("changes, message", [
    (dict(frames=1), "frames must be between 2 and 120, got 1"),
    (dict(frames=121), "frames must be between 2 and 120, got 121"),
    (dict(prompt_b="a red circle"), "prompt A and prompt B are the same"),
    (dict(mode="seeds", seed=4, seed_b=4), "seed A and seed B are both 4"),
    (dict(mode="images"), "images mode needs two images: image A is missing"),
    (dict(mode="zoom"), "interpolation mode must be one of prompts, seeds, both, images, got 'zoom'"),
    (dict(easing="bounce"), "easing must be one of linear, ease-in-out, got 'bounce'"),
    (dict(fps=0), "frame rate must be between 1 and 60, got 0"),
    (dict(batch_count=2), "batch count and batch size must be 1"),
])
def test_bad_settings_are_refused_with_a_clear_message(changes, message):
    settings = {"prompt": "a red circle", "prompt_b": "a blue circle", **changes}
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        InterpolateRequest(**settings)


def test_too_little_renoise_for_the_steps_fails_with_advice_and_the_engine_keeps_serving(engine):
    request = InterpolateRequest(mode="images", prompt="", image_a=shape_image("red", "white"),
                                 image_b=shape_image("blue", "white"), strength=0.1, steps=5, frames=2)
    job = engine.submit(request)
    events = list(job.events(timeout=60))
    assert "leaves no step to denoise" in events[-1].message and "at least 11" in events[-1].message
    assert not (engine.config.outputs_dir / "interpolate").exists() or not any(
        (engine.config.outputs_dir / "interpolate").rglob("*-images"))
    assert len(engine.generate(Txt2ImgRequest(prompt="still works", seed=1, steps=1), timeout=60).images) == 1


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("demo-interpolate")
    config = AppConfig(models_dir=PROJECT_ROOT / "models", outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="demo-shapes")
    engine = Engine(config).start()
    yield engine
    engine.shutdown()


@needs_demo
def test_demo_prompt_walk_from_red_to_blue_is_monotone(demo_engine):
    from ldm_ui.demo.judge import judge

    frames = demo_engine.generate(InterpolateRequest(
        # on yellow, not white: the demo model draws blue on white nearly black (see its model card)
        mode="prompts", prompt="a red circle on a yellow background", prompt_b="a blue circle on a yellow background",
        seed=1, frames=8, steps=20, sampler="DPM++ 2M"), timeout=600).images
    red_minus_blue = []
    for frame in frames:
        rgb = np.asarray(frame, dtype=np.float32)
        mask = judge(frame).mask
        assert mask.sum() > 0.02 * mask.size, "no foreground shape found"
        red_minus_blue.append(float((rgb[..., 0] - rgb[..., 2])[mask].mean()))
    assert judge(frames[0]).color == "red" and judge(frames[-1]).color == "blue"
    rises = [later - earlier for earlier, later in zip(red_minus_blue, red_minus_blue[1:]) if later > earlier]
    span = red_minus_blue[0] - red_minus_blue[-1]
    assert len(rises) <= 1 and all(rise < 0.1 * span for rise in rises), red_minus_blue


@needs_demo
def test_demo_image_walk_ends_are_the_inputs_within_the_vae_reconstruction_error(demo_engine):
    from ldm_ui.demo import data
    from ldm_ui.engine.latent_math import psnr_db
    from ldm_ui.requests import InspectLatentsRequest

    rng = np.random.default_rng(5)
    image_a = data.make_scene(rng, "red", "circle", "white").image
    image_b = data.make_scene(rng, "green", "triangle", "black").image
    frames = demo_engine.generate(InterpolateRequest(mode="images", prompt="", image_a=image_a, image_b=image_b,
                                                     frames=5), timeout=300).images
    for frame, source in ((frames[0], image_a), (frames[-1], image_b)):
        round_trip = demo_engine.generate(InspectLatentsRequest(image=source), timeout=300).result
        # the end frame is the VAE's round trip of the input: exactly its error, and that error is small
        assert psnr_db(source, frame) == pytest.approx(round_trip.psnr_db, abs=0.05)
        assert psnr_db(source, frame) > 20
    assert psnr_db(image_a, frames[2]) < psnr_db(image_a, frames[0]) - 3  # the middle is an in-between
