"""The AUTOMATIC1111-compatible API (/sdapi/v1) over plain HTTP, against the running app on the built-in model.

The app is started as app.py starts it (--api, a browser login and an API login) on loopback; every request
goes through the real server.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageDraw

from api_assets import BRIGHT_VAE, TINY_UPSCALER, add_api_assets, decode, encode
from browser_support import free_port
from ldm_ui.config import PROJECT_ROOT, AppConfig, ConfigError, config_from_args
from ldm_ui.demo.judge import judge
from ldm_ui.image_ops import blur_mask
from ldm_ui.requests import Cancelled, Preview, Progress
from tiny_models import build_tiny_sd

APP_USER, APP_PASSWORD = "alice", "app password"
BOT_USER, BOT_PASSWORD = "bot", "api password"
EVE_USER, EVE_PASSWORD = "eve", "another api password"
PROMPT = "a red circle on a blue background"
SMALL = dict(width=64, height=64, steps=20, sampler_name="Euler a")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(base url, engine, config): the app with --api on a models folder holding the demo assets and a tiny model."""
    import app

    root = tmp_path_factory.mktemp("sdapi")
    models = root / "models"
    for part in ("diffusers/demo-shapes", "Lora", "ControlNet/demo-canny", "embeddings"):
        shutil.copytree(PROJECT_ROOT / "models" / part, models / part)
    build_tiny_sd(models / "diffusers" / "tiny-sd")
    styles = add_api_assets(models, root)
    config = AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=root / "cache", api=True,
                       auth=[(APP_USER, APP_PASSWORD)], api_auth=[(BOT_USER, BOT_PASSWORD), (EVE_USER, EVE_PASSWORD)], max_file_size_mb=1,
                       port=free_port(), styles_file=styles,
                       preview_method="approx")  # previews of one pixel per latent cell
    engine, demo = app.create_app(config)
    demo.launch(**app.launch_kwargs(config, app.create_api(config, engine, demo)), prevent_thread_lock=True,
                quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}", engine, config
    finally:
        demo.close()
        engine.shutdown()


@pytest.fixture
def api(server):
    url, _, _ = server
    with httpx.Client(base_url=url + "/sdapi/v1", auth=(BOT_USER, BOT_PASSWORD), timeout=300) as client:
        yield client


def test_txt2img_draws_the_prompt_and_answers_like_automatic1111(api, server):
    _, _, config = server
    response = api.post("/txt2img", json={"prompt": PROMPT, "seed": 1, "batch_size": 2, **SMALL})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"images", "parameters", "info"}
    info = json.loads(body["info"])
    assert info["seed"] == 1 and info["all_seeds"] == [1, 2]
    assert info["width"] == 64 and info["sampler_name"] == "Euler a" and info["sd_model_name"] == "demo-shapes"
    assert len(body["images"]) == len(info["infotexts"]) == 2
    assert body["parameters"]["prompt"] == PROMPT and body["parameters"]["seed"] == 1
    for data, seed, infotext in zip(body["images"], (1, 2), info["infotexts"]):
        image = decode(data)
        assert image.size == (64, 64)
        assert image.info["parameters"] == infotext and f"Seed: {seed}," in infotext
        verdict = judge(pixels(image))
        assert (verdict.color, verdict.background) == ("red", "blue")
    assert not list(config.outputs_dir.rglob("*.png")), "save_images is false by default, as in AUTOMATIC1111"
    saved = api.post("/txt2img", json={"prompt": PROMPT, "seed": 3, "save_images": True, "send_images": False,
                                       **SMALL}).json()
    assert saved["images"] == []
    paths = json.loads(saved["info"])["saved_paths"]
    assert len(paths) == 1 and Path(paths[0]).parent.parent.parent == config.outputs_dir
    assert "Seed: 3," in Image.open(paths[0]).info["parameters"]


def test_clip_skip_override_and_weighted_prompt(api):
    plain = api.post("/txt2img", json={"prompt": PROMPT, "seed": 4, **SMALL}).json()
    skipped = api.post("/txt2img", json={"prompt": PROMPT, "seed": 4, **SMALL,
                                         "override_settings": {"CLIP_stop_at_last_layers": 2}}).json()
    info = json.loads(skipped["info"])
    assert info["clip_skip"] == 2 and "Clip skip: 2" in info["infotexts"][0] and info["ignored"] == []
    assert json.loads(plain["info"])["clip_skip"] == 1
    assert not np.array_equal(pixels(decode(plain["images"][0])), pixels(decode(skipped["images"][0])))
    same = api.post("/txt2img", json={"prompt": PROMPT.replace("red", "(red:1.0)"), "seed": 4, **SMALL}).json()
    assert np.array_equal(pixels(decode(plain["images"][0])), pixels(decode(same["images"][0])))


def test_same_seed_gives_the_same_image_as_the_browsers_txt2img(api, server):
    from gradio_client import Client

    url, _, _ = server
    first = api.post("/txt2img", json={"prompt": PROMPT, "seed": 42, **SMALL}).json()
    second = api.post("/txt2img", json={"prompt": PROMPT, "seed": 42, **SMALL}).json()
    assert np.array_equal(pixels(decode(first["images"][0])), pixels(decode(second["images"][0])))
    client = Client(url, auth=(APP_USER, APP_PASSWORD), verbose=False)
    gallery = client.predict(prompt=PROMPT, seed=42, steps=20, sampler="Euler a", api_name="/txt2img")[2]
    path = gallery[0]["image"]
    path = path["path"] if isinstance(path, dict) else path
    assert np.array_equal(pixels(Image.open(path)), pixels(decode(first["images"][0])))
    other_seed = api.post("/txt2img", json={"prompt": PROMPT, "seed": 43, **SMALL}).json()
    assert not np.array_equal(pixels(decode(other_seed["images"][0])), pixels(decode(first["images"][0])))


def test_img2img_and_inpaint_keep_the_pixels_outside_the_mask(api):
    source = Image.new("RGB", (64, 64), (30, 60, 220))
    ImageDraw.Draw(source).ellipse((8, 8, 40, 40), fill=(220, 30, 30))
    plain = api.post("/img2img", json={"init_images": [encode(source)], "prompt": "a yellow square on a green "
                                       "background", "denoising_strength": 0.9, "seed": 5, **SMALL})
    assert plain.status_code == 200, plain.text
    plain_info = json.loads(plain.json()["info"])
    assert plain_info["denoising_strength"] == 0.9 and "Denoising strength: 0.9" in plain_info["infotexts"][0]
    assert decode(plain.json()["images"][0]).size == (64, 64)

    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((32, 0, 63, 63), fill=255)  # repaint the right half
    response = api.post("/img2img", json={
        "init_images": [encode(source)], "mask": "data:image/png;base64," + encode(mask), "mask_blur": 2,
        "inpainting_fill": 1, "inpaint_full_res": False, "denoising_strength": 1.0,
        "prompt": "a yellow square on a green background", "seed": 5, **SMALL})
    assert response.status_code == 200, response.text
    result = pixels(decode(response.json()["images"][0]))
    original = pixels(source)
    keep = np.asarray(blur_mask(mask, 2)) == 0  # outside the mask and its blur
    assert keep.sum() > 0.4 * keep.size
    assert np.array_equal(result[keep], original[keep])  # identical, not merely close
    assert np.abs(result[:, 40:].astype(int) - original[:, 40:].astype(int)).mean() > 10, "the masked half changed"
    infotext = json.loads(response.json()["info"])["infotexts"][0]
    assert "Mask blur: 2" in infotext


def test_progress_shows_the_live_preview_and_interrupt_stops_within_a_step(api, server):
    _, engine, _ = server
    previewed, seen = threading.Event(), {"after_cancel": 0, "last_step": 0, "end": None}

    def watch(job, event):
        if getattr(job.request, "steps", 0) != 150:
            return
        if isinstance(event, Preview):
            previewed.set()
        elif isinstance(event, Progress) and event.steps:
            seen["last_step"] = event.step
            seen["after_cancel"] += job.cancel_requested
        elif isinstance(event, Cancelled):
            seen["end"] = event

    engine.event_listeners.append(watch)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=api.post("/txt2img", json={
        "prompt": PROMPT, "seed": 7, "steps": 150, "width": 128, "height": 128})))
    try:
        worker.start()
        assert previewed.wait(120), "no live preview arrived"
        progress = api.get("/progress").json()
        assert progress["current_image"], "progress must carry the latest preview"
        preview = decode(progress["current_image"])  # the approx preview: one pixel per latent cell
        assert preview.size == (128 // 8, 128 // 8) and len(set(preview.getdata())) > 1
        assert progress["state"]["sampling_steps"] == 150 and 0 < progress["state"]["sampling_step"] < 150
        assert 0 < progress["progress"] < 1 and progress["state"]["job_count"] == 1
        assert api.get("/progress", params={"skip_current_image": True}).json()["current_image"] is None
        with httpx.Client(base_url=api.base_url, auth=(EVE_USER, EVE_PASSWORD), timeout=60) as eve:
            assert eve.get("/progress").json()["state"]["job_count"] == 0, "another user's job is not eve's"
            assert eve.post("/interrupt").json() == {"interrupted": 0}
        assert api.post("/interrupt").json() == {"interrupted": 1}
        worker.join(120)
    finally:
        engine.event_listeners.remove(watch)
    response = result["response"]
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["info"])["interrupted"] is True and response.json()["images"] == []
    assert isinstance(seen["end"], Cancelled) and seen["last_step"] < 150
    assert seen["after_cancel"] <= 1, f"{seen['after_cancel']} steps ran after the interrupt"


def test_skip_ends_the_current_image_and_the_next_one_is_made(api, server):
    _, engine, _ = server
    first_progress = threading.Event()

    def watch(job, event):
        if getattr(job.request, "steps", 0) == 60 and isinstance(event, Progress) and event.steps \
                and event.batch_index == 0:
            first_progress.set()

    engine.event_listeners.append(watch)
    result = {}
    worker = threading.Thread(target=lambda: result.update(response=api.post("/txt2img", json={
        "prompt": PROMPT, "seed": 7, "steps": 60, "n_iter": 2})))
    try:
        worker.start()
        assert first_progress.wait(120)
        assert api.post("/skip").json() == {"skipped": 1}
        worker.join(120)
    finally:
        engine.event_listeners.remove(watch)
    body = result["response"].json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 1 and info["all_seeds"][-1] == 8  # the first image skipped, the second made
    idle = api.get("/progress").json()
    assert idle["state"]["job_count"] == 0 and idle["progress"] == 0 and idle["current_image"] is None


def read_events(response) -> list[tuple[str, dict]]:
    """(event, data) pairs of a server-sent event stream, up to its end."""
    events, kind = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            kind = line[len("event: "):]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[len("data: "):])))
    return events


def test_stream_sends_progress_previews_and_results_without_polling(api, monkeypatch):
    import ldm_ui.api.stream

    monkeypatch.setattr(ldm_ui.api.stream, "WAIT_FOR_TASK_S", 5.0)  # how long a stream waits for its task
    streams = {}

    def listen(who: str, auth: tuple[str, str]) -> threading.Thread:
        connected = threading.Event()

        def read():
            with httpx.Client(base_url=api.base_url, auth=auth, timeout=60) as client:
                with client.stream("GET", "/stream/my-task-1") as response:
                    streams[who] = {"status": response.status_code}
                    connected.set()
                    streams[who]["events"] = read_events(response)

        thread = threading.Thread(target=read)
        thread.start()
        assert connected.wait(60)
        return thread

    # both open the stream before the job is posted; a task id is no key to another user's job
    readers = [listen("bot", (BOT_USER, BOT_PASSWORD)), listen("eve", (EVE_USER, EVE_PASSWORD))]
    response = api.post("/txt2img", json={"prompt": PROMPT, "seed": 11, "steps": 40, "width": 128, "height": 128,
                                          "force_task_id": "my-task-1"})
    for reader in readers:
        reader.join(60)
    assert response.status_code == 200 and streams["bot"]["status"] == 200
    events = streams["bot"]["events"]
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "queued" and kinds[-1] == "done" and "progress" in kinds and "preview" in kinds, kinds
    previews = [data for kind, data in events if kind == "preview"]
    assert decode(previews[-1]["image"]).size == (16, 16)
    results = [data for kind, data in events if kind == "result"]
    assert len(results) == 1 and results[0]["seed"] == 11
    assert np.array_equal(pixels(decode(results[0]["image"])), pixels(decode(response.json()["images"][0])))
    assert streams["eve"]["events"] == [("failed", {"message": "no task 'my-task-1' of yours started within 5 s; "
                                                               "post txt2img or img2img with force_task_id set to it"})]


@pytest.mark.parametrize("change,status,named", [
    ({"width": 1001}, 422, "1001"),
    ({"steps": 0}, 422, "steps must be between 1 and 150, got 0"),
    ({"sampler_name": "Nonexistent"}, 404, "'Nonexistent'"),
    ({"sampler_name": "Euler", "scheduler": "karras"}, 404, "'karras'"),
    ({"override_settings": {"sd_model_checkpoint": "no-such-model"}}, 404, "'no-such-model'"),
    ({"seed": 2**33}, 422, str(2**33)),
    ({"override_settings": {"CLIP_stop_at_last_layers": 13}}, 422, "clip skip must be between 1 and 12, got 13"),
    ({"steps": "many"}, 422, "steps"),
    ({"prompt": "a red circle <lora:no-such-lora:1>"}, 500, "'no-such-lora'"),  # fails on the worker
])
def test_bad_input_is_refused_with_the_value_named_and_the_server_keeps_serving(api, change, status, named):
    response = api.post("/txt2img", json={"prompt": PROMPT, **SMALL, **change})
    assert response.status_code == status, response.text
    assert named in response.text
    if status == 404:
        assert "choose one of" in response.json()["detail"]
    assert api.post("/txt2img", json={"prompt": PROMPT, "seed": 1, "steps": 2, "width": 64, "height": 64}) \
        .status_code == 200


def test_bad_images_and_codes_are_refused(api):
    source = encode(Image.new("RGB", (64, 64), "blue"))
    for body, named in (({"init_images": ["not base64 at all!"]}, "init_images[0]"),
                        ({"init_images": [source], "resize_mode": 3}, "resize_mode"),
                        ({"init_images": [source], "mask": source, "inpainting_fill": 7}, "inpainting_fill"),
                        ({"init_images": [source], "denoising_strength": 2}, "denoising strength"),
                        ({}, "init_images")):
        response = api.post("/img2img", json={"prompt": PROMPT, **SMALL, **body})
        assert response.status_code == 422 and named in response.json()["detail"], response.text


def test_logins_are_enforced_on_every_api_route(server):
    url, _, _ = server
    with httpx.Client(base_url=url, timeout=60) as stranger:
        paths = sorted(openapi_paths(url))
        assert "/sdapi/v1/txt2img" in paths and "/sdapi/v1/progress" in paths
        assert all(p.startswith("/sdapi/v1/") for p in paths), "docs list our routes only"
        for path, method in paths_and_methods(url):
            for auth in (None, (BOT_USER, "wrong"), (APP_USER, APP_PASSWORD)):  # --api-auth replaces --auth
                response = stranger.request(method, path, json={}, auth=auth)
                assert response.status_code == 401, (method, path, auth)
        for path in ("/sdapi/v1/docs", "/sdapi/v1/openapi.json"):
            assert stranger.get(path).status_code == 401
            assert stranger.get(path, auth=(BOT_USER, BOT_PASSWORD)).status_code == 200
        assert stranger.get("/sdapi/v1/options").headers["www-authenticate"].startswith("Basic")
    with httpx.Client(base_url=url, timeout=60) as browser:  # the app's own login (session cookie) works too
        assert browser.post("/login", data={"username": APP_USER, "password": APP_PASSWORD}).status_code == 200
        assert browser.get("/sdapi/v1/options").json()["sd_model_checkpoint"]


def openapi_paths(url: str) -> list[str]:
    spec = httpx.get(url + "/sdapi/v1/openapi.json", auth=(BOT_USER, BOT_PASSWORD), timeout=60).json()
    return ["/sdapi/v1" + path for path in spec["paths"]]


def paths_and_methods(url: str) -> list[tuple[str, str]]:
    spec = httpx.get(url + "/sdapi/v1/openapi.json", auth=(BOT_USER, BOT_PASSWORD), timeout=60).json()
    return [("/sdapi/v1" + path, method.upper()) for path, item in spec["paths"].items() for method in item]


def test_listings_show_what_ldm_ui_has(api):
    models = api.get("/sd-models").json()
    assert {m["title"] for m in models} == {"demo-shapes", "tiny-sd"}
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    assert "Euler a" in [s["name"] for s in api.get("/samplers").json()]
    assert [s["name"] for s in api.get("/schedulers").json()] == ["automatic", "karras"]
    assert [lora["name"] for lora in api.get("/loras").json()] == ["demo-outline"]
    assert [u["name"] for u in api.get("/upscalers").json()][:2] == ["Lanczos", "Nearest"]
    modes = [m["name"] for m in api.get("/latent-upscale-modes").json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes
    assert "demo-redcircle" in api.get("/embeddings").json()["loaded"]
    assert [u["name"] for u in api.get("/upscalers").json()] == ["Lanczos", "Nearest", TINY_UPSCALER]
    flags = api.get("/cmd-flags")
    assert flags.json()["api"] is True and BOT_PASSWORD not in flags.text and APP_PASSWORD not in flags.text
    assert api.get("/memory").json()["ram"]["total"] > 0
    assert api.post("/refresh-checkpoints").status_code == 200 and api.post("/refresh-loras").status_code == 200


def test_no_route_of_the_issue_answers_501(api, server):
    url, _, _ = server
    routes = {path.removeprefix("/sdapi/v1") for path in openapi_paths(url)}
    issue_routes = {"/txt2img", "/img2img", "/progress", "/interrupt", "/skip", "/sd-models", "/samplers",
                    "/schedulers", "/upscalers", "/latent-upscale-modes", "/loras", "/embeddings", "/sd-vae",
                    "/prompt-styles", "/cmd-flags", "/memory", "/refresh-checkpoints", "/refresh-loras", "/options",
                    "/png-info", "/extra-single-image", "/extra-batch-images", "/stream/{task_id}"}
    assert issue_routes <= routes, issue_routes - routes
    for path, method in paths_and_methods(url):
        if method == "GET" and "{" not in path:
            response = api.request(method, path.removeprefix("/sdapi/v1"))
            assert response.status_code == 200, (path, response.text)
    for path in ("/extra-single-image", "/extra-batch-images"):  # an empty body: 422 naming what is missing
        response = api.post(path, json={})
        assert response.status_code == 422 and ("image" in response.text or "imageList" in response.text), path


def test_options_switch_the_model_through_the_queue(api, server):
    _, engine, _ = server
    assert api.get("/options").json()["sd_model_checkpoint"] == "demo-shapes"
    try:
        assert api.post("/options", json={"sd_model_checkpoint": "tiny-sd [0123abcd]"}).status_code == 200
        assert engine.models.current.entry.name == "tiny-sd"
        assert api.get("/options").json()["sd_model_checkpoint"] == "tiny-sd"
        info = json.loads(api.post("/txt2img", json={"prompt": "x", "steps": 2, "width": 64, "height": 64}).json()["info"])
        assert info["sd_model_name"] == "tiny-sd"
        missing = api.post("/options", json={"sd_model_checkpoint": "nope"})
        assert missing.status_code == 404 and "'nope'" in missing.text
    finally:
        assert api.post("/options", json={"sd_model_checkpoint": "demo-shapes"}).status_code == 200
    assert engine.models.current.entry.name == "demo-shapes"


def test_controlnet_units_from_alwayson_scripts_place_the_shape(api):
    from ldm_ui.demo.train_controlnet import control_iou

    scene = Image.new("RGB", (64, 64), (30, 60, 220))
    ImageDraw.Draw(scene).ellipse((4, 4, 30, 30), fill=(220, 30, 30))
    unit = {"enabled": True, "image": encode(scene), "module": "canny", "model": "demo-canny [abcdef12]",
            "weight": 1.0, "guidance_start": 0.0, "guidance_end": 1.0, "threshold_a": 100, "threshold_b": 200,
            "control_mode": "Balanced", "resize_mode": "Crop and Resize"}
    ious = []
    for seed in (1, 2, 3):
        response = api.post("/txt2img", json={"prompt": PROMPT, "seed": seed, "width": 64, "height": 64,
                                              "steps": 20, "sampler_name": "DPM++ 2M",
                                              "alwayson_scripts": {"ControlNet": {"args": [unit]}}})
        assert response.status_code == 200, response.text
        assert "demo-canny" in json.loads(response.json()["info"])["infotexts"][0]
        ious.append(control_iou(decode(response.json()["images"][0]), np.asarray(scene)[:, :, 0] > 128))
    assert np.mean(ious) >= 0.5, f"IoU of the generated shape with the control circle: {ious}"
    unknown = api.post("/txt2img", json={"prompt": PROMPT, **SMALL, "alwayson_scripts": {
        "controlnet": {"args": [{**unit, "model": "no-such-controlnet"}]}}})
    assert unknown.status_code == 422 and "no-such-controlnet" in unknown.text
    wrong_type = api.post("/txt2img", json={"prompt": PROMPT, **SMALL, "alwayson_scripts": {
        "controlnet": {"args": [{**unit, "weight": "strong"}]}}})
    assert wrong_type.status_code == 422 and "ControlNet unit 1 weight must be a number, got 'strong'" in wrong_type.text


def test_png_info_reads_an_image_the_app_saved(api, server):
    _, engine, _ = server
    from ldm_ui.requests import Txt2ImgRequest

    finished = engine.generate(Txt2ImgRequest(prompt=PROMPT + ", shiny", negative_prompt="blurry", seed=9, steps=3,
                                              sampler="DDIM"), timeout=120)  # the UI's path: the engine saves it
    data = base64.b64encode(Path(finished.outputs[0].path).read_bytes()).decode()
    body = api.post("/png-info", json={"image": "data:image/png;base64," + data}).json()
    assert body["info"] == finished.outputs[0].infotext
    parameters = body["parameters"]
    assert parameters["Prompt"] == PROMPT + ", shiny" and parameters["Negative prompt"] == "blurry"
    assert parameters["Seed"] == "9" and parameters["Sampler"] == "DDIM" and parameters["Size-1"] == "64"
    blank = api.post("/png-info", json={"image": encode(Image.new("RGB", (8, 8)))}).json()
    assert blank["info"] == "" and blank["parameters"] == {}


def test_saving_options_are_read_and_written_under_automatic1111s_names(api, server):
    _, engine, config = server
    before = api.get("/options").json()
    assert (before["samples_format"], before["jpeg_quality"], before["samples_filename_pattern"],
            before["save_txt"]) == ("png", 80, "", False)
    try:
        changed = api.post("/options", json={"samples_format": "jpg", "jpeg_quality": 90, "save_txt": True,
                                              "samples_filename_pattern": "[seed]-[sampler]"})
        assert changed.status_code == 200 and changed.json() == {}
        options = api.get("/options").json()
        assert (options["samples_format"], options["jpeg_quality"], options["samples_filename_pattern"],
                options["save_txt"]) == ("jpg", 90, "[seed]-[sampler]", True)
        body = api.post("/txt2img", json={"prompt": PROMPT, "seed": 5, "save_images": True, **SMALL}).json()
        infotext = json.loads(body["info"])["infotexts"][0]
        sent = decode(body["images"][0])
        assert sent.format == "JPEG"  # as AUTOMATIC1111 sends them: in samples_format, the infotext in EXIF
        path = Path(json.loads(body["info"])["saved_paths"][0])
        assert path.name.endswith("-5-Euler a.jpg") and path.with_suffix(".txt").read_text() == infotext
        for data in (body["images"][0], base64.b64encode(path.read_bytes()).decode()):
            read = api.post("/png-info", json={"image": "data:image/jpeg;base64," + data}).json()
            assert read["info"] == infotext and read["parameters"]["Seed"] == "5"
        # a Settings tab (or a restart) sees what the API saved
        from ldm_ui import user_settings

        assert user_settings.load(config)[0].samples_format == "jpg"
        bad = api.post("/options", json={"samples_format": "gif", "save_txt": False})
        assert bad.status_code == 422 and "output format must be one of png, jpg, webp, got 'gif'" in bad.text
        bad = api.post("/options", json={"samples_filename_pattern": "[seed]-[nope]"})
        assert bad.status_code == 422 and "unknown tag [nope]; allowed tags: [seed]" in bad.text
        assert api.get("/options").json()["save_txt"] is True  # a refused request changes nothing
        webp = api.post("/options", json={"samples_format": "webp"})
        assert webp.status_code == 200
        body = api.post("/txt2img", json={"prompt": PROMPT, "seed": 6, **SMALL}).json()
        read = api.post("/png-info", json={"image": body["images"][0]}).json()
        assert decode(body["images"][0]).format == "WEBP" and "Seed: 6," in read["info"]
    finally:
        api.post("/options", json={"samples_format": "png", "jpeg_quality": 80, "samples_filename_pattern": "",
                                   "save_txt": False})
    assert api.get("/options").json()["samples_format"] == "png"


def test_a_body_over_the_limit_is_refused_before_it_is_read(api):
    too_big = b"{" + b" " * (4 * 1024 * 1024 + 10) + b"}"  # the limit is 4 x --max-file-size-mb (1 MB here)
    response = api.post("/img2img", content=too_big, headers={"content-type": "application/json"})
    # the app's guard (ldm_ui/guard.py) refuses it from Content-Length, with the API's own limit for /sdapi/
    assert response.status_code == 413 and "4194304 bytes" in response.text


def test_api_flags(tmp_path):
    assert config_from_args(["--api"]).api and not config_from_args([]).api
    assert config_from_args(["--api", "--api-auth", "a:b"]).api_auth == [("a", "b")]
    assert config_from_args(["--api", "--listen", "--auth", "a:b"]).listen
    for flags in (["--api", "--listen"], ["--api", "--share", "--share-without-auth"]):
        with pytest.raises(ConfigError, match="--api-auth user:password"):
            config_from_args(flags)
    with pytest.raises(ConfigError, match="add --api"):
        config_from_args(["--api-auth", "a:b"])
    with pytest.raises(ConfigError, match="expected 'user:password'"):
        config_from_args(["--api", "--api-auth", "nocolon"])


def test_txt2img_hires_fields_run_the_second_pass(api):
    body = api.post("/txt2img", json={"prompt": PROMPT, "seed": 3, "steps": 6, "width": 64, "height": 64,
                                      "enable_hr": True, "hr_scale": 2,
                                      "hr_upscaler": "Latent", "hr_second_pass_steps": 3,
                                      "denoising_strength": 0.5}).json()
    image = decode(body["images"][0])
    info = json.loads(body["info"])
    assert image.size == (128, 128)  # the demo model's 64px, upscaled twice
    assert "Hires upscale: 2" in info["infotexts"][0] and "Hires upscaler: Latent" in info["infotexts"][0]
    assert not any("enable_hr" in item for item in info.get("ignored", []))


# ---- VAE, styles and overrides


def test_sd_vae_and_prompt_styles_list_what_the_pickers_offer(api, server):
    from ldm_ui.engine.vae_choice import vae_choices
    from ldm_ui.styles import load_styles

    _, _, config = server
    vaes = api.get("/sd-vae").json()
    assert [v["model_name"] for v in vaes] == [BRIGHT_VAE] == vae_choices(config)[2:]  # after Automatic, None
    assert set(vaes[0]) == {"model_name", "filename"} and vaes[0]["filename"].endswith(BRIGHT_VAE)
    styles = api.get("/prompt-styles").json()
    assert styles == [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
                      for s in load_styles(config.styles_file).styles.values()]
    assert {"name": "Sunset", "prompt": "a orange {prompt} on a purple background",
            "negative_prompt": "blue, green"} in styles


def test_styles_are_merged_into_the_prompt_as_the_ui_does(api, server):
    from ldm_ui.ui.styles_panel import apply_picked

    _, _, config = server
    body = api.post("/txt2img", json={"prompt": "circle", "negative_prompt": "blurry", "seed": 6, **SMALL,
                                      "styles": ["Sunset", "Blueprint"]}).json()
    info = json.loads(body["info"])
    ui_prompt, ui_negative = apply_picked(config.styles_file, "circle", "blurry", ["Sunset", "Blueprint"])[:2]
    assert info["all_prompts"] == [ui_prompt] and info["all_negative_prompts"] == [ui_negative]
    assert ui_prompt == "a white a orange circle on a purple background on a blue background"  # in the order named
    assert ui_negative == "blurry, blue, green" and info["styles"] == ["Sunset", "Blueprint"] and info["ignored"] == []
    assert info["infotexts"][0].startswith(ui_prompt + "\nNegative prompt: blurry, blue, green\n")
    unknown = api.post("/txt2img", json={"prompt": "circle", **SMALL, "styles": ["Sunset", "Vaporwave"]})
    assert unknown.status_code == 404, unknown.text
    detail = unknown.json()["detail"]
    assert "'Vaporwave'" in detail and "choose one of" in detail and "Sunset" in detail and "Blueprint" in detail


def brightness(body: dict) -> float:
    return float(pixels(decode(body["images"][0])).mean())


def test_a_vae_override_is_for_one_request_unless_restore_afterwards_is_false(api, server):
    _, engine, _ = server
    plain = {"prompt": PROMPT, "seed": 4, **SMALL}
    own = api.post("/txt2img", json=plain).json()
    assert json.loads(own["info"])["sd_vae_name"] is None
    once = api.post("/txt2img", json={**plain, "override_settings": {"sd_vae": BRIGHT_VAE}}).json()
    info = json.loads(once["info"])
    assert info["sd_vae_name"] == BRIGHT_VAE and f"VAE: {BRIGHT_VAE}" in info["infotexts"][0]
    assert brightness(once) > brightness(own) + 20  # the brighter decoder made it
    assert api.get("/options").json()["sd_vae"] == "Automatic"  # the previous choice is back
    again = api.post("/txt2img", json=plain).json()
    assert np.array_equal(pixels(decode(again["images"][0])), pixels(decode(own["images"][0])))
    try:
        kept = api.post("/txt2img", json={**plain, "override_settings": {"sd_vae": BRIGHT_VAE},
                                          "override_settings_restore_afterwards": False}).json()
        assert np.array_equal(pixels(decode(kept["images"][0])), pixels(decode(once["images"][0])))
        assert api.get("/options").json()["sd_vae"] == BRIGHT_VAE
        assert engine.models.current.vae_selection.choice == BRIGHT_VAE  # the browser's picker shows it too
        after = api.post("/txt2img", json=plain).json()
        assert np.array_equal(pixels(decode(after["images"][0])), pixels(decode(once["images"][0])))
        assert api.post("/options", json={"sd_vae": "Automatic"}).status_code == 200
        back = api.post("/txt2img", json=plain).json()
        assert np.array_equal(pixels(decode(back["images"][0])), pixels(decode(own["images"][0])))
        assert api.post("/options", json={"sd_vae": BRIGHT_VAE}).status_code == 200
        assert brightness(api.post("/txt2img", json=plain).json()) > brightness(own) + 20
    finally:
        api.post("/options", json={"sd_vae": "Automatic"})
    assert api.get("/options").json()["sd_vae"] == "Automatic"
    for response in (api.post("/txt2img", json={**plain, "override_settings": {"sd_vae": "no-such-vae"}}),
                     api.post("/options", json={"sd_vae": "no-such-vae"})):
        assert response.status_code == 404 and "'no-such-vae'" in response.text, response.text
        assert f"choose one of: Automatic, None, {BRIGHT_VAE}" in response.json()["detail"]


def test_model_and_clip_skip_overrides_are_restored_afterwards_unless_asked_to_stay(api, server):
    _, engine, _ = server
    small = {"prompt": PROMPT, "seed": 2, "steps": 2, "width": 64, "height": 64}
    once = api.post("/txt2img", json={**small, "override_settings": {"sd_model_checkpoint": "tiny-sd",
                                                                     "CLIP_stop_at_last_layers": 2}}).json()
    info = json.loads(once["info"])
    assert info["sd_model_name"] == "tiny-sd" and info["clip_skip"] == 2
    assert engine.models.current.entry.name == "demo-shapes"  # loaded back before the answer came
    options = api.get("/options").json()
    assert options["sd_model_checkpoint"] == "demo-shapes" and options["CLIP_stop_at_last_layers"] == 1
    assert json.loads(api.post("/txt2img", json=small).json()["info"])["clip_skip"] == 1
    try:
        kept = api.post("/txt2img", json={**small, "override_settings_restore_afterwards": False,
                                          "override_settings": {"sd_model_checkpoint": "tiny-sd",
                                                                "CLIP_stop_at_last_layers": 2}}).json()
        assert json.loads(kept["info"])["sd_model_name"] == "tiny-sd"
        assert engine.models.current.entry.name == "tiny-sd"
        options = api.get("/options").json()
        assert options["sd_model_checkpoint"] == "tiny-sd" and options["CLIP_stop_at_last_layers"] == 2
        after = json.loads(api.post("/txt2img", json=small).json()["info"])
        assert after["sd_model_name"] == "tiny-sd" and after["clip_skip"] == 2
        bad = api.post("/options", json={"CLIP_stop_at_last_layers": 13})
        assert bad.status_code == 422 and "CLIP_stop_at_last_layers must be a whole number between 1 and 12, " \
                                          "got 13" in bad.text
    finally:
        assert api.post("/options", json={"sd_model_checkpoint": "demo-shapes",
                                          "CLIP_stop_at_last_layers": 1}).status_code == 200
    assert engine.models.current.entry.name == "demo-shapes"
    assert api.get("/options").json()["CLIP_stop_at_last_layers"] == 1


def test_variation_seed_fields_make_a_variation(api):
    plain = api.post("/txt2img", json={"prompt": PROMPT, "seed": 8, **SMALL}).json()
    varied = api.post("/txt2img", json={"prompt": PROMPT, "seed": 8, **SMALL, "subseed": 99,
                                        "subseed_strength": 0.5}).json()
    info = json.loads(varied["info"])
    assert info["subseed"] == 99 and info["subseed_strength"] == 0.5 and info["ignored"] == []
    assert "Variation seed: 99" in info["infotexts"][0]
    assert not np.array_equal(pixels(decode(plain["images"][0])), pixels(decode(varied["images"][0])))
    resized = json.loads(api.post("/txt2img", json={"prompt": PROMPT, "seed": 8, **SMALL, "seed_resize_from_w": 128,
                                                    "seed_resize_from_h": 128}).json()["info"])
    assert (resized["seed_resize_from_w"], resized["seed_resize_from_h"]) == (128, 128)
    assert "Seed resize from: 128x128" in resized["infotexts"][0]


# ---- Extras


def scene(size=(40, 32)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((8, 6, 30, 26), fill=(220, 30, 30))
    return image


def test_extra_single_image_upscales_through_the_queue_without_saving(api, server):
    _, _, config = server
    source = scene()
    body = api.post("/extra-single-image", json={"image": encode(source), "upscaler_1": "Lanczos",
                                                 "upscaling_resize": 2.5}).json()
    assert set(body) == {"html_info", "image"}
    made = decode(body["image"])
    assert made.size == (100, 80)
    assert np.array_equal(pixels(made), pixels(source.resize((100, 80), Image.Resampling.LANCZOS)))
    assert "Postprocess upscale by: 2.5" in body["html_info"] and "Postprocess upscaler: Lanczos" in body["html_info"]
    assert "Postprocess upscaler: Lanczos" in made.info["parameters"]
    blended = decode(api.post("/extra-single-image", json={
        "image": "data:image/png;base64," + encode(source), "upscaler_1": "Nearest", "upscaler_2": "Lanczos",
        "extras_upscaler_2_visibility": 0.25}).json()["image"])
    expected = Image.blend(source.resize((80, 64), Image.Resampling.NEAREST),
                           source.resize((80, 64), Image.Resampling.LANCZOS), 0.25)
    assert np.array_equal(pixels(blended), pixels(expected))
    to_size = decode(api.post("/extra-single-image", json={
        "image": encode(source), "upscaler_1": TINY_UPSCALER, "resize_mode": 1, "upscaling_resize_w": 96,
        "upscaling_resize_h": 48}).json()["image"])
    assert to_size.size == (96, 48)
    assert not (config.outputs_dir / "extras").exists(), "AUTOMATIC1111's API does not save Extras results"


def test_extra_batch_images_upscales_each_image(api):
    items = [{"data": encode(scene()), "name": "first.png"}, {"data": encode(scene((24, 24))), "name": "second"}]
    body = api.post("/extra-batch-images", json={"imageList": items, "upscaler_1": "Nearest",
                                                 "upscaling_resize": 2}).json()
    assert set(body) == {"html_info", "images"}
    assert [decode(data).size for data in body["images"]] == [(80, 64), (48, 48)]
    assert np.array_equal(pixels(decode(body["images"][1])),
                          pixels(scene((24, 24)).resize((48, 48), Image.Resampling.NEAREST)))
    assert body["html_info"].count("<p>") == 2


@pytest.mark.parametrize("change,status,named", [
    ({"gfpgan_visibility": 0.5}, 422, "gfpgan_visibility=0.5: face restoration (GFPGAN) is not available"),
    ({"codeformer_visibility": 1}, 422, "codeformer_visibility=1: face restoration (CodeFormer) is not available"),
    ({"resize_mode": 2}, 422, "resize_mode must be one of 0 (scale by upscaling_resize), 1 (scale to"),
    ({"upscaling_resize": 8}, 422, "upscaling_resize must be between 1 and 4, got 8"),
    ({"extras_upscaler_2_visibility": 2}, 422, "extras_upscaler_2_visibility must be between 0 and 1, got 2"),
    ({"resize_mode": 1, "upscaling_resize_w": 0}, 422, "upscaling_resize_w must be between 1 and 4096, got 0"),
    ({"resize_mode": 1, "upscaling_crop": False}, 422, "upscaling_crop=false is not built"),
    ({"upscaler_1": "None"}, 422, "upscaler_1 is 'None'"),
    ({"upscaler_1": "4x-foo"}, 404, f"unknown upscaler '4x-foo' in upscaler_1; choose one of: Lanczos, Nearest, "
                                    f"{TINY_UPSCALER}"),
    ({"upscaler_2": "4x-bar"}, 404, "unknown upscaler '4x-bar' in upscaler_2; choose one of: None, Lanczos"),
    ({"image": "not base64 at all!"}, 422, "image"),
])
def test_extras_bad_input_names_the_field_and_the_server_keeps_serving(api, change, status, named):
    response = api.post("/extra-single-image", json={"image": encode(scene()), "upscaler_1": "Lanczos", **change})
    assert response.status_code == status, response.text
    assert named in response.json()["detail"]
    empty = api.post("/extra-batch-images", json={"imageList": [], "upscaler_1": "Lanczos"})
    assert empty.status_code == 422 and "imageList" in empty.json()["detail"]
    assert api.post("/extra-single-image", json={"image": encode(scene()), "upscaler_1": "Lanczos"}).status_code == 200


def test_subseed_fields_run_the_variation_seed_in_img2img(api):
    source = Image.new("RGB", (64, 64), (30, 60, 220))
    image_body = {"init_images": [encode(source)], "prompt": PROMPT, "denoising_strength": 0.8, "seed": 6, **SMALL}
    plain = api.post("/img2img", json=image_body).json()
    resized = api.post("/img2img", json={**image_body, "subseed": 77, "subseed_strength": 0.3,
                                         "seed_resize_from_w": 96, "seed_resize_from_h": 64}).json()
    info = json.loads(resized["info"])
    assert "Variation seed: 77" in info["infotexts"][0] and "Seed resize from: 96x64" in info["infotexts"][0]
    assert (info["seed_resize_from_w"], info["seed_resize_from_h"]) == (96, 64) and info["ignored"] == []
    assert not np.array_equal(pixels(decode(plain["images"][0])), pixels(decode(resized["images"][0])))
