"""The engine as a user of txt2img sees it: same seed same image, previews, interrupt, saved infotext."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from PIL import Image

from ldm_ui.engine.engine import JobCancelled, JobFailed
from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.metadata import parse_infotext, read_png_parameters
from ldm_ui.requests import Cancelled, Finished, Preview, Progress, Queued, RequestError, Txt2ImgRequest


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def request(**changes) -> Txt2ImgRequest:
    settings = dict(prompt="a red circle on a blue background", steps=4, seed=42)
    settings.update(changes)
    return Txt2ImgRequest(**settings)


def test_same_seed_gives_identical_pixels_and_other_seed_differs(engine):
    first = engine.generate(request(), timeout=60).images[0]
    again = engine.generate(request(), timeout=60).images[0]
    other = engine.generate(request(seed=43), timeout=60).images[0]
    assert np.array_equal(pixels(first), pixels(again))
    assert not np.array_equal(pixels(first), pixels(other))


def test_batch_seeds_count_up_and_match_single_generations(engine):
    batch = engine.generate(request(seed=100, batch_size=2, batch_count=2), timeout=60)
    assert [o.seed for o in batch.outputs] == [100, 101, 102, 103]
    single = engine.generate(request(seed=103), timeout=60).images[0]
    # batched matmuls round differently on the CPU, so an image from a batch of 2 matches its single twin closely
    assert np.abs(pixels(batch.outputs[3].image) - pixels(single)).max() <= 3
    counted = engine.generate(request(seed=100, batch_count=3), timeout=60)
    assert [o.seed for o in counted.outputs] == [100, 101, 102]
    single = engine.generate(request(seed=102), timeout=60).images[0]
    assert np.array_equal(pixels(counted.outputs[2].image), pixels(single))


def test_random_seed_is_reported_and_reproduces(engine):
    finished = engine.generate(request(seed=-1), timeout=60)
    used = finished.outputs[0].seed
    assert 0 <= used < 2**32
    assert f"Seed: {used}" in finished.outputs[0].infotext
    again = engine.generate(request(seed=used), timeout=60)
    assert np.array_equal(pixels(finished.images[0]), pixels(again.images[0]))


@pytest.mark.parametrize("steps,every", [(7, 1), (7, 3), (8, 4), (5, 10)])
def test_preview_count_is_ceil_of_steps_over_n(engine, steps, every):
    job = engine.submit(request(steps=steps, preview_every_n_steps=every, sampler="Euler", preview_method="approx"))
    events = list(job.events(timeout=60))
    previews = [e for e in events if isinstance(e, Preview)]
    assert len(previews) == math.ceil(steps / every)
    assert isinstance(events[-1], Finished)
    # a preview arrives before the final image; approx shows the latent grid upscaled by nothing yet: 8x8 latents
    assert events.index(previews[0]) < len(events) - 1
    assert previews[0].image.size == (8, 8)


def test_previews_come_at_most_once_per_interval_of_sampling(app_config):
    """Steps of milliseconds (a GPU, the demo model) make no preview nobody could see: the first eligible step
    gives one, then none until --preview-interval seconds of sampling have passed."""
    from ldm_ui.engine.engine import Engine

    app_config.preview_interval_s = 60.0
    engine = Engine(app_config).start()
    try:
        events = list(engine.submit(request(steps=8, preview_every_n_steps=1, sampler="Euler")).events(60))
        shown = [e.step for e in events if isinstance(e, Preview)]
        assert shown == [1], "one preview (the first step's) in a job shorter than the interval"
        assert [e.step for e in events if isinstance(e, Progress) and e.steps] == list(range(1, 9))
        app_config.preview_interval_s = 0.0
        events = list(engine.submit(request(steps=8, preview_every_n_steps=1, sampler="Euler")).events(60))
        assert [e.step for e in events if isinstance(e, Preview)] == list(range(1, 9))
    finally:
        engine.shutdown()


def test_full_vae_preview_has_image_resolution_and_off_gives_none(engine):
    full = [e for e in engine.submit(request(preview_method="full")).events(60) if isinstance(e, Preview)]
    off = [e for e in engine.submit(request(preview_method="off")).events(60) if isinstance(e, Preview)]
    assert full and full[0].image.size == (64, 64)
    assert off == []


def test_progress_reports_each_step_with_rate_and_eta(engine):
    events = list(engine.submit(request(steps=5, batch_count=2)).events(60))
    steps = [(e.batch_index, e.step) for e in events if isinstance(e, Progress) and not e.message]
    assert steps == [(b, s) for b in range(2) for s in range(1, 6)]
    last = [e for e in events if isinstance(e, Progress) and not e.message][-1]
    assert last.it_per_s > 0 and last.eta_s == 0 and last.fraction == 1.0


def test_cancel_stops_within_one_step_and_skips_decode_and_save(engine, app_config):
    stepped = []
    cancel_at = 3

    def hook(info):
        stepped.append(info.step)
        if info.step == cancel_at:
            job.cancel()

    engine.step_hooks.append(hook)
    try:
        job = engine.submit(request(steps=50))
        events = list(job.events(timeout=60))
    finally:
        engine.step_hooks.remove(hook)
    assert isinstance(events[-1], Cancelled)
    assert max(stepped) == cancel_at, "the job ran past the step it was interrupted in"
    assert not list(app_config.outputs_dir.rglob("*.png")), "an interrupted job must not save an image"
    # and the next job runs normally
    assert engine.generate(request(steps=2), timeout=60).images


def test_cancel_while_queued_never_starts(engine):
    gate = threading.Event()
    engine.step_hooks.append(lambda info: gate.wait(10))
    try:
        first = engine.submit(request(steps=2))
        second = engine.submit(request(steps=2))
        first_events = iter(first.events(timeout=60))
        second_queued = next(second.events(timeout=60))
        assert isinstance(second_queued, Queued) and second_queued.position == 1
        second.cancel()
        gate.set()
        assert isinstance(list(first_events)[-1], Finished)
        with pytest.raises(JobCancelled):
            second.wait(60)
    finally:
        engine.step_hooks.clear()


def test_saved_png_carries_infotext_that_parses_back(engine, app_config):
    finished = engine.generate(request(negative_prompt="blurry, low quality", cfg_scale=6.5, sampler="DPM++ 2M Karras",
                                       steps=3, seed=7), timeout=60)
    path = finished.outputs[0].path
    assert path.startswith(str(app_config.outputs_dir / "txt2img"))
    with Image.open(path) as saved:
        text = read_png_parameters(saved)
        assert saved.size == (64, 64)
    info = parse_infotext(text)
    assert info.prompt == "a red circle on a blue background"
    assert info.negative_prompt == "blurry, low quality"
    assert info.settings["Steps"] == "3"
    assert info.settings["Sampler"] == "DPM++ 2M Karras"
    assert info.settings["CFG scale"] == "6.5"
    assert info.settings["Seed"] == "7"
    assert info.settings["Size"] == "64x64"
    assert info.settings["Model"] == "tiny-sd"
    assert len(info.settings["Model hash"]) == 10


def test_same_seed_same_saved_file_content(engine):
    a = engine.generate(request(), timeout=60).outputs[0].path
    b = engine.generate(request(), timeout=60).outputs[0].path
    assert a != b
    assert np.array_equal(pixels(Image.open(a)), pixels(Image.open(b)))


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_runs(engine, sampler):
    finished = engine.generate(request(sampler=sampler, steps=4), timeout=120)
    image = pixels(finished.images[0])
    assert image.shape == (64, 64, 3) and image.std() > 0
    assert f"Sampler: {sampler}" in finished.outputs[0].infotext


def test_deterministic_samplers_reproduce(engine):
    for sampler in ("Euler", "DPM++ 2M Karras", "UniPC", "Euler a"):
        a = engine.generate(request(sampler=sampler), timeout=60).images[0]
        b = engine.generate(request(sampler=sampler), timeout=60).images[0]
        assert np.array_equal(pixels(a), pixels(b)), sampler


@pytest.mark.parametrize("changes,message", [
    (dict(width=1001), "width must be a multiple of 8 between 64 and 2048, got 1001"),
    (dict(height=32), "height must be a multiple of 8 between 64 and 2048, got 32"),
    (dict(steps=0), "steps must be between 1 and 150, got 0"),
    (dict(steps=10_001), "steps must be between 1 and 150, got 10001"),
    (dict(cfg_scale=float("nan")), "CFG scale must be a finite number between 0 and 30, got nan"),
    (dict(batch_size=0), "batch size must be between 1 and 8, got 0"),
    (dict(batch_count=101), "batch count must be between 1 and 100, got 101"),
    (dict(sampler="Euler b"), "unknown sampler 'Euler b'; choose one of: Euler a, Euler,"),
    (dict(prompt="x" * 10_000), "prompt is 10,000 characters long; the limit is 4,000"),
    (dict(seed=2**32), "seed must be between -1 and 4294967295 (-1 picks a random seed), got 4294967296"),
    (dict(steps=2.5), "steps must be a whole number between 1 and 150, got 2.5"),
])
def test_bad_requests_are_refused_with_a_clear_message(changes, message):
    with pytest.raises(RequestError) as caught:
        request(**changes)
    assert message in str(caught.value)


def test_unknown_model_is_refused_at_submit_and_the_engine_keeps_serving(engine):
    with pytest.raises(RequestError, match=r"unknown model 'no-such-model'.*tiny-sd"):
        engine.submit(request(model="no-such-model"))
    assert engine.generate(request(steps=2), timeout=60).images


def test_a_failing_job_reports_and_the_next_job_runs(engine):
    def explode(info):
        raise RuntimeError("boom at step %d" % info.step)

    engine.step_hooks.append(explode)
    try:
        with pytest.raises(JobFailed, match="RuntimeError: boom at step 0"):
            engine.generate(request(), timeout=60)
    finally:
        engine.step_hooks.remove(explode)
    assert engine.generate(request(steps=2), timeout=60).images


def test_switching_models_frees_the_previous_one(engine, models_dir):
    import gc
    import weakref

    from tiny_models import build_tiny_sd

    other = models_dir / "diffusers" / "tiny-sd-2"
    if not other.exists():
        build_tiny_sd(other, seed=1)
    first = engine.switch_model("tiny-sd")
    ref = weakref.ref(first.pipe.unet)
    del first
    second = engine.switch_model("tiny-sd-2")
    gc.collect()
    assert second.entry.name == "tiny-sd-2"
    assert ref() is None, "the previous model's UNet is still in memory"
    finished = engine.generate(request(model="tiny-sd-2"), timeout=60)
    assert "Model: tiny-sd-2" in finished.outputs[0].infotext


def test_cpu_threads_follow_the_flag_else_one_for_tiny_models():
    from types import SimpleNamespace

    import torch

    from ldm_ui.engine.models import TINY_UNET_PARAMS, cpu_threads_for, is_tiny

    tiny = is_tiny(SimpleNamespace(unet=torch.nn.Linear(8, 8)))
    large = is_tiny(SimpleNamespace(unet=torch.nn.ParameterList([torch.nn.Parameter(torch.empty(TINY_UNET_PARAMS))])))
    assert tiny and not large
    assert cpu_threads_for(tiny, configured=0, default=4) == 1
    assert cpu_threads_for(large, configured=0, default=4) == 4
    assert cpu_threads_for(tiny, configured=3, default=4) == 3


def test_the_worker_runs_a_cpu_model_with_the_configured_threads(app_config):
    from dataclasses import replace

    import torch

    from ldm_ui.engine.engine import Engine

    engine = Engine(replace(app_config, cpu_threads=2)).start()
    seen = []
    engine.step_hooks.append(lambda *args, **kwargs: seen.append(torch.get_num_threads()))
    try:
        assert engine.switch_model("tiny-sd").cpu_threads == 2
        assert not torch.backends.mkldnn.enabled  # oneDNN's per-call setup outweighs tiny convolutions
        engine.generate(request(steps=2), timeout=60)
        assert seen and set(seen) == {2}, seen
    finally:
        engine.shutdown()
        torch.set_num_threads(1)  # conftest's setting, for the tests after this one
