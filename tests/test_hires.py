"""Hires fix: txt2img's second pass at a larger size, on tiny models and on the built-in demo model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.metadata import generation_fields, parse_infotext, read_png_parameters
from ldm_ui.requests import (
    Cancelled, Failed, Finished, HiresFix, Output, Preview, Progress, RequestError, Txt2ImgRequest,
)

DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "diffusers" / "demo-shapes"
needs_demo = pytest.mark.skipif(not (DEMO_DIR / "model_index.json").is_file(),
                                reason="the built-in demo model (models/diffusers/demo-shapes) is not trained yet")
FAST = dict(prompt="a red circle", steps=4, seed=3, sampler="Euler", width=64, height=64)


def events_of(engine, request) -> list:
    return list(engine.submit(request).events())


def hires_steps(events) -> list[tuple[int, int]]:
    return [(e.step, e.steps) for e in events if isinstance(e, Progress) and e.phase == "hires"]


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (nearest-exact)", "Latent (bicubic antialiased)", "Lanczos",
                                      "Nearest"])
def test_output_is_upscaled_by_the_factor_with_every_kind_of_upscaler(engine, upscaler):
    finished = engine.generate(Txt2ImgRequest(**FAST, hires=HiresFix(upscaler=upscaler, scale=1.5,
                                                                      denoising_strength=0.5)))
    assert [image.size for image in finished.images] == [(96, 96)]
    assert f"with {upscaler}" in finished.summary


def test_resize_to_a_size_covers_then_crops_and_one_side_keeps_the_aspect(engine):
    both = engine.generate(Txt2ImgRequest(**FAST, hires=HiresFix(resize_width=128, resize_height=72)))
    assert both.images[0].size == (128, 72)
    one = engine.generate(Txt2ImgRequest(**{**FAST, "width": 96}, hires=HiresFix(resize_width=192)))
    assert one.images[0].size == (192, 128)


def test_infotext_has_a1111s_hires_keys_and_png_info_reads_them_back(engine):
    request = Txt2ImgRequest(**FAST, hires=HiresFix(upscaler="Latent (bicubic)", scale=2, steps=6,
                                                     denoising_strength=0.55, sampler="DDIM",
                                                     prompt="a big red circle", negative_prompt="blurry"))
    output = engine.generate(request).outputs[0]
    with Image.open(output.path) as saved:
        text = read_png_parameters(saved)
    settings = parse_infotext(text).settings
    assert {k: settings[k] for k in settings if k.startswith("Hires") or k == "Denoising strength"} == {
        "Denoising strength": "0.55", "Hires sampler": "DDIM", "Hires prompt": "a big red circle",
        "Hires negative prompt": "blurry", "Hires upscale": "2", "Hires steps": "6",
        "Hires upscaler": "Latent (bicubic)"}
    assert settings["Size"] == "64x64"  # A1111 records the first pass's size
    fields, notes = generation_fields(parse_infotext(text))
    assert fields["hires"] == request.hires and not notes


def test_hires_keys_are_left_out_when_they_repeat_the_first_pass(engine):
    request = Txt2ImgRequest(**FAST, hires=HiresFix(resize_width=96, resize_height=96, sampler="Euler",
                                                     prompt=FAST["prompt"]))
    settings = parse_infotext(engine.generate(request).outputs[0].infotext).settings
    assert settings["Hires resize"] == "96x96"
    assert not {"Hires upscale", "Hires sampler", "Hires prompt", "Hires steps"} & set(settings)
    assert generation_fields(parse_infotext(engine.generate(request).outputs[0].infotext))[0]["hires"] == HiresFix(
        resize_width=96, resize_height=96)


def test_progress_and_previews_continue_through_the_second_pass(engine):
    request = Txt2ImgRequest(**FAST, preview_method="approx", preview_every_n_steps=1, batch_count=2,
                             hires=HiresFix(steps=10, denoising_strength=0.6))
    events = events_of(engine, request)
    assert isinstance(events[-1], Finished)
    # diffusers' img2img rule: int(steps x strength) of the hires steps run, in each batch
    assert hires_steps(events) == [(step, 6) for step in range(1, 7)] * 2
    first = [e for e in events if isinstance(e, Progress) and not e.phase and e.steps]
    assert [e.step for e in first] == [1, 2, 3, 4] * 2
    preview_sizes = {e.image.size for e in events if isinstance(e, Preview)}
    assert len(preview_sizes) == 2, f"previews of both passes (two sizes) expected, got {preview_sizes}"
    from ldm_ui.ui.common import describe_progress

    hires_progress = next(e for e in events if isinstance(e, Progress) and e.phase == "hires" and e.step == 3)
    assert "hires: step 3/6" in describe_progress(hires_progress)


def test_hires_steps_zero_runs_as_many_as_the_first_pass(engine):
    events = events_of(engine, Txt2ImgRequest(**{**FAST, "steps": 6}, hires=HiresFix(denoising_strength=0.5)))
    assert hires_steps(events) == [(step, 3) for step in range(1, 4)]


def test_interrupt_in_the_second_pass_stops_the_job_and_saves_nothing(engine, app_config):
    def stop_in_hires_pass(info):
        if info.latents.shape[-1] > 8:  # the first pass of 64px has 8 latent cells a side
            info.stop = True

    engine.step_hooks.append(stop_in_hires_pass)
    try:
        events = events_of(engine, Txt2ImgRequest(**FAST, hires=HiresFix(steps=10, denoising_strength=1.0)))
    finally:
        engine.step_hooks.remove(stop_in_hires_pass)
    assert isinstance(events[-1], Cancelled) and "step 1/10" in events[-1].message
    assert not [e for e in events if isinstance(e, Output)]
    assert not list((app_config.outputs_dir).rglob("*.png"))


def test_interrupt_in_the_first_pass_never_starts_the_second(engine):
    def stop_at_once(info):
        info.stop = True

    engine.step_hooks.append(stop_at_once)
    try:
        events = events_of(engine, Txt2ImgRequest(**FAST, hires=HiresFix()))
    finally:
        engine.step_hooks.remove(stop_at_once)
    assert isinstance(events[-1], Cancelled)
    assert hires_steps(events) == []


def test_denoising_strength_zero_keeps_the_upscaled_first_pass(engine):
    events = events_of(engine, Txt2ImgRequest(**FAST, hires=HiresFix(upscaler="Lanczos", denoising_strength=0.0)))
    assert isinstance(events[-1], Finished) and events[-1].images[0].size == (128, 128)
    assert hires_steps(events) == []


def test_bad_hires_settings_are_refused_with_the_limit_named(engine):
    with pytest.raises(RequestError, match="upscale factor must be between 1 and 4, got 8"):
        HiresFix(scale=8)
    with pytest.raises(RequestError, match=r"4096x4096 .* between 64 and 2048"):
        Txt2ImgRequest(prompt="x", width=1024, height=1024, hires=HiresFix(scale=4))
    with pytest.raises(RequestError, match="hires resize width"):
        HiresFix(resize_width=100)
    with pytest.raises(RequestError, match="unknown hires sampler 'Warp'"):
        HiresFix(sampler="Warp")
    # an unknown upscaler is refused on the worker (it knows the installed models), with the list
    failed = events_of(engine, Txt2ImgRequest(**FAST, hires=HiresFix(upscaler="4x-Nonexistent")))[-1]
    assert isinstance(failed, Failed)
    assert "unknown upscaler '4x-Nonexistent'" in failed.message and "Latent (nearest-exact), Lanczos" in failed.message
    # the size limit also holds at the model's native size, when the request left the size out
    failed = events_of(engine, Txt2ImgRequest(prompt="x", steps=1, hires=HiresFix(scale=4)))[-1]
    native = engine.models.current.native_size
    if native * 4 > 2048:
        assert isinstance(failed, Failed) and "2048" in failed.message
    assert isinstance(engine.generate(Txt2ImgRequest(**FAST)), Finished)  # and the engine keeps serving


# ---- the built-in demo model


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("hires-demo")
    engine = Engine(AppConfig(outputs_dir=root / "outputs", cache_dir=root / "cache")).start()
    yield engine
    engine.shutdown()


@needs_demo
@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_demo_red_circle_on_blue_stays_a_red_circle_on_blue_at_twice_the_size(demo_engine, upscaler):
    from ldm_ui.demo.judge import judge

    request = Txt2ImgRequest(model="demo-shapes", prompt="a red circle on a blue background", seed=1, steps=12,
                             width=64, height=64, hires=HiresFix(upscaler=upscaler, scale=2, denoising_strength=0.5))
    image = demo_engine.generate(request).images[0]
    assert image.size == (128, 128)
    verdict = judge(image)
    assert (verdict.color, verdict.shape, verdict.background) == ("red", "circle", "blue"), verdict
    # the circle grew with the image: it covers about as much of the frame as at 64px
    assert 0.05 < verdict.mask.mean() < 0.6
    assert np.asarray(image).shape == (128, 128, 3)
