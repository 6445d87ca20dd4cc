"""--backend ray: two CPU engine replicas of the demo model on a local Ray Serve, behind the same UI and API.

One Ray instance (2 CPUs, a small object store) and one deployment serve every test here; the test that kills a
replica runs last. Ray is started and stopped by this module only: the rest of the suite never imports it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_support import running_app
from ldm_ui.config import DEMO_MODEL_NAME, AppConfig, ConfigError, config_from_args
from ldm_ui.requests import (
    Cancelled, Failed, Finished, InterpolateRequest, Progress, Queued, RequestError, Started, Txt2ImgRequest,
)

ROOT = Path(__file__).resolve().parent.parent
STEPS = 8


# ---- flags and imports (before Ray starts)


def test_replicas_zero_and_ray_only_flags_are_refused():
    with pytest.raises(ConfigError, match="--replicas must be between 1 and 1024, got 0"):
        config_from_args(["--backend", "ray", "--replicas", "0", "--replicas-cpu"])
    with pytest.raises(ConfigError, match="only applies with --backend ray"):
        config_from_args(["--replicas", "2"])
    with pytest.raises(ConfigError, match=r"--ray-address ray://head:10001: a Ray Client address \(ray://\) cannot"):
        config_from_args(["--backend", "ray", "--ray-address", "ray://head:10001"])


def test_backend_ray_without_ray_installed_says_what_to_install(monkeypatch):
    for name in [n for n in sys.modules if n == "ray" or n.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees when the package is missing
    with pytest.raises(ConfigError, match=r"pip install 'ray\[serve\]==2.60.0'"):
        config_from_args(["--backend", "ray", "--replicas-cpu"])


def test_the_local_backend_never_imports_ray(tmp_path):
    code = ("import sys, app; from ldm_ui.config import config_from_args; from ldm_ui.backends import create_engine; "
            f"import ldm_ui.ui.app; engine = create_engine(config_from_args(['--outputs-dir', {str(tmp_path)!r}])); "
            "engine.start(); "
            "assert engine.generate(__import__('ldm_ui.requests').requests.Txt2ImgRequest(prompt='x', steps=2, "
            "seed=1)).outputs; engine.shutdown(); print(type(engine).__name__, 'ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2:] == ["Engine", "False"]


def test_the_front_claims_one_numbered_folder_per_planned_run_and_refuses_places_outside(tmp_path):
    from ldm_ui.backends.outputs import FrontOutputs, PlannedRunFiles
    from ldm_ui.results import UnsavedFile

    outputs = tmp_path / "outputs"
    day = outputs / "interpolate" / "2026-12-01"
    replica = PlannedRunFiles(outputs)
    run_a, run_b = replica.new_folder(day, "seeds"), replica.new_folder(day, "seeds")
    gif_a = replica.write(b"GIF-a", run_a, "interpolation.gif")
    gif_b = replica.write(b"GIF-b", run_b, "interpolation.gif")
    assert not outputs.exists(), "the replica side writes nothing"
    front = FrontOutputs(outputs)
    assert front.file(gif_a) == day / "00000-seeds" / "interpolation.gif"
    assert front.file(gif_b) == day / "00001-seeds" / "interpolation.gif"
    assert front.file(replica.write(b"MP4-a", run_a, "interpolation.mp4")) == day / "00000-seeds" / "interpolation.mp4"
    assert (day / "00000-seeds" / "interpolation.gif").read_bytes() == b"GIF-a"
    for place in ("../escape/x.gif", "/etc/x.gif", "x.gif", "interpolate/../../x.gif"):
        with pytest.raises(RequestError, match="invalid place"):
            front.file(UnsavedFile(place=place, data=b"x"))


# ---- two CPU replicas


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory, models_dir):
    """(url, engine, config): the app exactly as `app.py --backend ray --replicas 2 --replicas-cpu` builds it,
    on a models folder with the demo model and the tiny test model."""
    from ldm_ui.backends.ray_engine import connect, import_serve

    ray, serve = import_serve()  # with the front's router settings

    root = tmp_path_factory.mktemp("ray-app")
    models = root / "models"  # the demo model (copied: symlinks that leave the folder are not listed) and tiny-sd
    shutil.copytree(ROOT / "models" / "diffusers" / DEMO_MODEL_NAME, models / "diffusers" / DEMO_MODEL_NAME)
    shutil.copytree(models_dir / "diffusers" / "tiny-sd", models / "diffusers" / "tiny-sd")
    config = AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       backend="ray", replicas=2, replicas_cpu=True)
    connect(num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20, log_to_driver=False)
    try:
        with running_app(config) as (url, engine, _):
            yield url, engine, config
    finally:
        serve.shutdown()
        ray.shutdown()


def run_locally(requests: list, config: AppConfig, tmp_path: Path) -> list[Finished]:
    """The same requests on the local backend (an in-process engine on the same models)."""
    from ldm_ui.engine.engine import Engine

    engine = Engine(AppConfig(models_dir=config.models_dir, outputs_dir=tmp_path / "local-outputs",
                              cache_dir=tmp_path / "cache")).start()
    try:
        return [engine.generate(one) for one in requests]
    finally:
        engine.shutdown()


def local_images(seeds: list[int], config: AppConfig, tmp_path: Path) -> dict[int, np.ndarray]:
    finished = run_locally([request(seed) for seed in seeds], config, tmp_path)
    return {seed: np.asarray(done.outputs[0].image) for seed, done in zip(seeds, finished)}


def request(seed: int, steps: int = STEPS) -> Txt2ImgRequest:
    return Txt2ImgRequest(prompt="a red circle on a blue background", seed=seed, steps=steps)


def saved_pngs(config: AppConfig) -> list[Path]:
    return sorted(config.outputs_dir.rglob("*.png"))


def test_eight_jobs_from_four_clients_use_both_replicas_and_match_the_local_backend(ray_app, tmp_path):
    _, engine, config = ray_app
    before = saved_pngs(config)
    seeds = list(range(100, 108))
    results: dict[int, tuple[object, list]] = {}

    def client(mine: list[int]) -> None:
        jobs = [engine.submit(request(seed)) for seed in mine]  # each client has two jobs in flight at once
        for seed, job in zip(mine, jobs):
            results[seed] = (job, list(job.events()))

    clients = [threading.Thread(target=client, args=(seeds[i::4],)) for i in range(4)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()

    expected = local_images(seeds, config, tmp_path)
    for seed, (job, events) in results.items():
        finished = events[-1]
        assert isinstance(finished, Finished), events[-1]
        assert isinstance(events[0], Queued) and any(isinstance(e, Started) for e in events)
        assert any(isinstance(e, Progress) and e.steps == STEPS for e in events)
        [output] = finished.outputs
        assert f"Seed: {seed}" in output.infotext
        assert Path(output.path).parent.parent.parent == config.outputs_dir  # outputs/txt2img/<date>/
        assert np.array_equal(np.asarray(output.image), expected[seed]), f"seed {seed} differs from local"
    assert len({job.worker for job, _ in results.values()}) == 2, "both replicas should have run jobs"
    new = [p for p in saved_pngs(config) if p not in before]
    assert len(new) == 8, "each image is written exactly once, on the front's outputs folder"
    assert engine.queue_length == 0


def test_the_txt2img_api_runs_on_the_replicas(ray_app):
    from gradio_client import Client

    url, engine, config = ray_app
    result = Client(url, verbose=False).predict(prompt="a red circle on a blue background", seed=7,
                                                api_name="/txt2img")
    [item] = result[2]
    path = item["image"]["path"] if isinstance(item["image"], dict) else item["image"]
    assert Path(path).is_file()
    assert "Seed: 7" in result[3]
    assert engine.concurrency == 2  # the UI lets two generate events run at once, one per replica


def test_a_model_switch_loads_on_one_replica_and_its_jobs_go_there(ray_app):
    _, engine, _ = ray_app
    assert {s["model"] for s in engine.replica_status()} == {DEMO_MODEL_NAME}
    loaded = engine.switch_model("tiny-sd")
    assert loaded.entry.name == "tiny-sd" and engine.models.current is loaded
    holders = [s["actor_name"] for s in engine.replica_status() if s["model"] == "tiny-sd"]
    assert len(holders) == 1, "a model switch loads the model on one replica, not all"
    # strict affinity: five jobs for it at once all wait for the holder, though the other replica is idle
    jobs = [engine.submit(Txt2ImgRequest(prompt="a red circle", model="tiny-sd", seed=seed, steps=STEPS))
            for seed in (3, 4, 5, 6, 7)]
    assert all(isinstance(job.wait(), Finished) for job in jobs)
    assert [job.worker for job in jobs] == holders * 5, "jobs for a loaded model go to the replica that has it"
    assert [s["actor_name"] for s in engine.replica_status() if s["model"] == "tiny-sd"] == holders


def test_interrupt_stops_the_job_on_its_replica_within_a_step(ray_app):
    _, engine, _ = ray_app
    job = engine.submit(request(5, steps=150))
    events = job.events()
    for event in events:
        if isinstance(event, Progress) and event.step >= 2:
            break
    job.cancel()
    last = list(events)[-1]
    assert isinstance(last, Cancelled) and "interrupted at step" in last.message
    [status] = [s for s in engine.replica_status(when_idle=True) if s["actor_name"] == job.worker]
    assert status["last_outcome"].startswith("Cancelled: interrupted at step"), status
    step = int(status["last_outcome"].split("step ")[1].split("/")[0])
    assert step < 150
    assert isinstance(engine.generate(request(6)), Finished)  # the replica is free again


def test_skip_ends_the_current_image_on_its_replica_and_the_batch_goes_on(ray_app):
    _, engine, _ = ray_app
    steps = 150
    job = engine.submit(Txt2ImgRequest(prompt="a red circle", seed=21, steps=steps, batch_count=3))
    seen = []
    for event in job.events():
        seen.append(event)
        if isinstance(event, Progress) and event.steps and event.step == 2:
            if event.batch_index == 0:
                job.skip()  # during image 1, on the replica
    finished = seen[-1]
    assert isinstance(finished, Finished), finished
    last_step = {}
    for event in seen:
        if isinstance(event, Progress) and event.steps:
            last_step[event.batch_index] = event.step
    assert last_step[0] < steps, f"image 1 should end early: {last_step}"
    assert last_step[1] == last_step[2] == steps, f"images 2 and 3 should complete: {last_step}"
    assert [output.seed for output in finished.outputs] == [22, 23]


def test_interpolate_runs_on_a_replica_and_the_front_saves_frames_and_animation(ray_app, tmp_path):
    _, engine, config = ray_app
    walk = InterpolateRequest(mode="seeds", prompt="a red circle", seed=31, seed_b=32, frames=3, steps=STEPS)
    finished = engine.generate(walk)
    result = finished.result
    folder = Path(result.folder)
    assert folder.parent.parent == config.outputs_dir / "interpolate" and folder.name.endswith("-seeds")
    assert folder.name[:5].isdigit(), "the front claims a numbered folder of its own"
    assert str(folder) in finished.summary
    frames = [Path(output.path) for output in finished.outputs]
    assert len(frames) == 3 and all(frame.parent == folder for frame in frames)
    assert (Path(result.gif), Path(result.mp4)) == (folder / "interpolation.gif", folder / "interpolation.mp4")
    assert sorted(folder.iterdir()) == sorted(frames + [folder / "interpolation.gif", folder / "interpolation.mp4"])
    assert Path(result.mp4).stat().st_size > 0
    assert not list(config.outputs_dir.rglob(".run-*")), "the replica writes nothing in the outputs folder"
    [local] = run_locally([walk], config, tmp_path)
    for remote_frame, local_frame in zip(finished.images, local.images, strict=True):
        assert np.array_equal(np.asarray(remote_frame), np.asarray(local_frame))
    assert Path(result.gif).read_bytes() == Path(local.result.gif).read_bytes()
    with Image.open(result.gif) as gif:
        assert gif.n_frames == 3


def test_the_interpolate_tab_api_returns_the_animation_the_front_saved(ray_app):
    from gradio_client import Client

    url, _, config = ray_app
    result = Client(url, verbose=False).predict(mode="seeds", prompt="a red circle", seed=3, seed_b=4, frames=3,
                                                steps=2, api_name="/interpolate")
    gallery, gif, files = result[2], result[5], result[6]
    assert len(gallery) == 3 and "Done" in result[1]
    names = sorted(Path(f["path"] if isinstance(f, dict) else f).name for f in files)
    assert names == ["interpolation.gif", "interpolation.mp4"]
    with Image.open(gif if isinstance(gif, str) else gif["path"]) as animation:
        assert animation.n_frames == 3
    # this run's and the last test's, each in its own folder on the front
    assert len(list((config.outputs_dir / "interpolate").rglob("interpolation.gif"))) == 2


def test_a_killed_replica_fails_its_job_clearly_and_the_next_jobs_succeed(ray_app):
    import ray

    _, engine, config = ray_app
    kept = saved_pngs(config)
    job = engine.submit(request(9, steps=150))
    events = job.events()
    for event in events:
        if isinstance(event, Progress) and event.step >= 1:
            break
    ray.kill(ray.get_actor(job.worker, namespace="serve"), no_restart=True)
    last = list(events)[-1]
    assert isinstance(last, Failed) and last.message == "worker lost; retry"
    after = [engine.submit(request(seed)) for seed in (10, 11)]
    assert all(isinstance(j.wait(), Finished) for j in after)
    assert all(path.is_file() for path in kept), "nothing already saved is lost"
