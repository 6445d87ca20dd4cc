"""Faults a user will meet: out of memory, interrupts in every phase, a full disk, many saves at once.

After each fault the job ends with a clear message, nothing half-written is left in the outputs folder, and
the next job runs and saves its image.
"""

from __future__ import annotations

import errno
import gc
import threading
import types
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from PIL import Image

from ldm_ui.engine.engine import JobCancelled, JobFailed
from ldm_ui.image_saving import save_image
from ldm_ui.metadata import read_png_parameters
from ldm_ui.requests import Cancelled, Failed, Finished, Output, Progress, Queued, Txt2ImgRequest

TINY = "tiny-sd"


def request(**changes) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{"prompt": "a red circle", "model": TINY, "steps": 2, "seed": 1, **changes})


def saved_files(config) -> list:
    return sorted(p for p in config.outputs_dir.rglob("*") if p.is_file())


def assert_outputs_clean(config, expected: int) -> None:
    """Exactly `expected` complete PNGs with metadata, and no temp file left behind."""
    files = saved_files(config)
    assert not [p for p in files if p.name.startswith(".saving-")], files
    assert len(files) == expected, files
    for path in files:
        with Image.open(path) as image:
            image.load()  # a truncated file raises here
            assert "Seed:" in read_png_parameters(image)


def next_job_runs(engine, config, before: int) -> None:
    finished = engine.generate(request(seed=99), timeout=120)
    assert len(finished.outputs) == 1 and finished.outputs[0].seed == 99
    assert_outputs_clean(config, before + 1)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
], ids=["cuda", "python", "cpu-allocator"])
def test_out_of_memory_fails_clearly_releases_memory_and_the_next_job_runs(engine, app_config, error):
    seen = []

    def run_out_of_memory(info):
        seen.append(weakref.ref(info.latents))
        if info.step == 1:
            raise type(error)(*error.args)  # a fresh error, as the allocator raises (the parameter outlives the job)

    engine.step_hooks.append(run_out_of_memory)
    with pytest.raises(JobFailed) as failed:
        engine.generate(request(width=128, height=96, batch_size=2), timeout=120)
    engine.step_hooks.remove(run_out_of_memory)
    message = str(failed.value)
    assert "out of memory" in message and "--medvram" in message and "smaller size" in message
    assert "2 image(s) at 128x96" in message
    gc.collect()
    assert seen and all(ref() is None for ref in seen), "the failed job's latents are still held in memory"
    assert_outputs_clean(app_config, 0)
    next_job_runs(engine, app_config, 0)


def test_interrupt_while_queued(engine, app_config):
    gate, release = threading.Event(), threading.Event()

    def hold(info):
        gate.set()
        release.wait(30)

    engine.step_hooks.append(hold)
    running = engine.submit(request(steps=1))
    assert gate.wait(60)
    waiting = engine.submit(request(seed=5))
    first = next(waiting.events(timeout=10))
    assert isinstance(first, Queued) and first.position == 1  # its owner sees where it stands
    waiting.cancel()
    # it leaves the queue at once, while the running job still holds the worker
    events = list(waiting.events(timeout=10))
    assert isinstance(events[-1], Cancelled) and events[-1].message == "removed from the queue"
    assert not running.done.is_set() and engine.queue_length == 1
    release.set()
    engine.step_hooks.remove(hold)
    running.wait(timeout=60)
    assert not any(isinstance(e, Output) for e in events)
    assert_outputs_clean(app_config, 1)
    next_job_runs(engine, app_config, 1)


def test_interrupt_while_loading_the_model(engine, app_config):
    assert engine.models.current is None  # the first job loads the model
    job = engine.submit(request())
    for event in job.events(timeout=120):
        if isinstance(event, Progress) and event.message.startswith("loading"):
            job.cancel()
        if isinstance(event, (Cancelled, Failed, Finished)):
            break
    assert isinstance(event, Cancelled), event
    assert_outputs_clean(app_config, 0)
    next_job_runs(engine, app_config, 0)


def test_interrupt_while_sampling(engine, app_config):
    def stop_at_step_2(info):
        if info.step == 1:
            info.stop = True

    engine.step_hooks.append(stop_at_step_2)
    with pytest.raises(JobCancelled):
        engine.generate(request(steps=5), timeout=120)
    engine.step_hooks.remove(stop_at_step_2)
    assert_outputs_clean(app_config, 0)
    next_job_runs(engine, app_config, 0)


def cancel_when_module_runs(engine, module, job_request) -> None:
    """Submit the request and cancel it the moment ``module`` starts; the job must end cancelled."""
    job_box = {}

    def cancel(module, args):
        if "job" in job_box:
            job_box["job"].cancel()

    handle = module.register_forward_pre_hook(cancel)
    try:
        job_box["job"] = job = engine.submit(job_request)
        with pytest.raises(JobCancelled):
            job.wait(timeout=120)
    finally:
        handle.remove()


def test_interrupt_while_decoding(engine, app_config):
    engine.generate(request(), timeout=120)  # load the model so its VAE can be watched
    cancel_when_module_runs(engine, engine.models.current.pipe.vae.decoder, request(seed=3))
    assert_outputs_clean(app_config, 1)
    next_job_runs(engine, app_config, 1)


def test_interrupt_while_saving_keeps_whole_files_only(engine, app_config):
    job = engine.submit(request(batch_count=4))
    outputs = []
    for event in job.events(timeout=120):
        if isinstance(event, Output):
            outputs.append(event)
            job.cancel()  # arrives while the job moves on to its next image
        if isinstance(event, (Cancelled, Failed, Finished)):
            break
    assert isinstance(event, Cancelled)
    assert 1 <= len(outputs) < 4
    assert_outputs_clean(app_config, len(outputs))
    next_job_runs(engine, app_config, len(outputs))


def test_disk_full_fails_the_job_clearly_and_leaves_nothing_behind(engine, app_config, monkeypatch):
    from ldm_ui import image_saving

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    full_os = types.ModuleType("os")
    full_os.__dict__.update(image_saving.os.__dict__)
    full_os.fsync = full_disk  # the write reaches the disk at fsync: that is where a full disk shows
    monkeypatch.setattr(image_saving, "os", full_os)
    job = engine.submit(request())
    events = list(job.events(timeout=120))
    assert isinstance(events[-1], Failed)
    assert "disk is full" in events[-1].message and "--outputs-dir" in events[-1].message
    assert_outputs_clean(app_config, 0)
    monkeypatch.undo()  # space was freed
    next_job_runs(engine, app_config, 0)


def test_many_threads_saving_at_once_never_share_a_name(tmp_path):
    folder = tmp_path / "txt2img"
    colors = [(i * 7 % 256, i * 13 % 256, i * 29 % 256) for i in range(64)]

    def save(index):
        image = Image.new("RGB", (16, 16), colors[index])
        return save_image(image, folder, "42", f"a circle\nSteps: 2, Sampler: Euler, Seed: {index}")

    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(save, range(64)))
    assert len(set(paths)) == 64 and sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths)
    for index, path in enumerate(paths):
        with Image.open(path) as image:
            assert image.getpixel((0, 0)) == colors[index]  # each name holds the image that was saved under it
            assert f"Seed: {index}" in read_png_parameters(image)


def test_interrupt_while_encoding_the_input_image(engine, app_config):
    from ldm_ui.requests import Img2ImgRequest

    engine.generate(request(), timeout=120)  # load the model so its VAE encoder can be watched
    cancel_when_module_runs(engine, engine.models.current.pipe.vae.encoder, Img2ImgRequest(
        prompt="a red circle", model=TINY, steps=4, seed=4, init_image=Image.new("RGB", (64, 64), (200, 0, 0)),
        strength=0.5))
    assert_outputs_clean(app_config, 1)
    next_job_runs(engine, app_config, 1)
