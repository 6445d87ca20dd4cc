"""A third-party AUTOMATIC1111 client, `webuiapi` from PyPI, drives ldm-ui's /sdapi/v1 unchanged.

Here the app has only --auth: the API accepts the same logins over HTTP Basic, as webuiapi sends them.
"""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw

from api_assets import BRIGHT_VAE, TINY_UPSCALER, add_api_assets
from browser_support import free_port
from ldm_ui.config import PROJECT_ROOT, AppConfig
from ldm_ui.demo.judge import judge
from ldm_ui.image_ops import blur_mask
from ldm_ui.requests import Cancelled, Preview, Progress
from tiny_models import build_tiny_sd

webuiapi = pytest.importorskip("webuiapi")
USER, PASSWORD = "carol", "webui password"
PROMPT = "a red circle on a blue background"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import app

    root = tmp_path_factory.mktemp("webuiapi")
    models = root / "models"
    shutil.copytree(PROJECT_ROOT / "models" / "diffusers" / "demo-shapes", models / "diffusers" / "demo-shapes")
    build_tiny_sd(models / "diffusers" / "tiny-sd")
    styles = add_api_assets(models, root)
    config = AppConfig(models_dir=models, outputs_dir=root / "outputs", cache_dir=root / "cache", api=True,
                       auth=[(USER, PASSWORD)], port=free_port(), styles_file=styles)
    engine, demo = app.create_app(config)
    demo.launch(**app.launch_kwargs(config, app.create_api(config, engine, demo)), prevent_thread_lock=True,
                quiet=True)
    try:
        yield config.port, engine
    finally:
        demo.close()
        engine.shutdown()


@pytest.fixture
def client(server):
    port, _ = server
    return webuiapi.WebUIApi(host="127.0.0.1", port=port, sampler="Euler a", steps=20, username=USER,
                             password=PASSWORD)


def test_txt2img_and_png_info(client):
    result = client.txt2img(prompt=PROMPT, seed=4, width=64, height=64, batch_size=2)
    assert len(result.images) == 2 and result.info["all_seeds"] == [4, 5]
    for image in result.images:
        verdict = judge(np.asarray(image.convert("RGB")))
        assert (verdict.color, verdict.background) == ("red", "blue")
    assert result.parameters["prompt"] == PROMPT
    info = client.png_info(result.images[0])  # webuiapi sends the image back with its parameters chunk
    assert info.info == result.info["infotexts"][0]
    assert info.json["parameters"]["Seed"] == "4" and info.json["parameters"]["Prompt"] == PROMPT


def test_img2img_with_a_mask_keeps_the_rest(client):
    source = Image.new("RGB", (64, 64), (30, 60, 220))
    ImageDraw.Draw(source).ellipse((8, 8, 40, 40), fill=(220, 30, 30))
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((0, 40, 63, 63), fill=255)  # repaint the bottom strip
    result = client.img2img(images=[source], mask_image=mask, prompt="a yellow square on a green background",
                            denoising_strength=1.0, inpainting_fill=1, mask_blur=2, seed=2, width=64, height=64)
    made = np.asarray(result.image.convert("RGB"))
    keep = np.asarray(blur_mask(mask, 2)) == 0
    assert np.array_equal(made[keep], np.asarray(source)[keep])
    assert result.info["infotexts"][0].count("Mask blur: 2") == 1


def test_get_progress_during_a_job_and_interrupt(client, server):
    _, engine = server
    previewed, seen = threading.Event(), {"end": None, "last_step": 0}

    def watch(job, event):
        if getattr(job.request, "steps", 0) != 150:
            return
        if isinstance(event, Preview):
            previewed.set()
        elif isinstance(event, Progress) and event.steps:
            seen["last_step"] = event.step
        elif isinstance(event, Cancelled):
            seen["end"] = event

    engine.event_listeners.append(watch)
    result = {}
    worker = threading.Thread(target=lambda: result.update(
        out=client.txt2img(prompt=PROMPT, steps=150, width=128, height=128, seed=3)))
    try:
        worker.start()
        assert previewed.wait(120)
        progress = client.get_progress()
        assert progress["current_image"] and 0 < progress["progress"] < 1
        assert progress["state"]["sampling_steps"] == 150
        client.interrupt()
        worker.join(120)
    finally:
        engine.event_listeners.remove(watch)
    assert result["out"].images == [] and result["out"].info["interrupted"] is True
    assert isinstance(seen["end"], Cancelled) and seen["last_step"] < 150
    client.util_wait_for_ready(check_interval=0.1)  # returns at once: progress 0 and no jobs


def test_model_names_and_set_model(client, server):
    _, engine = server
    assert client.util_get_model_names() == ["demo-shapes", "tiny-sd"]
    assert client.util_get_current_model() == "demo-shapes"
    try:
        client.util_set_model("tiny-sd")
        assert engine.models.current.entry.name == "tiny-sd"
        assert client.util_get_current_model() == "tiny-sd"
    finally:
        client.util_set_model("demo-shapes")
    assert engine.models.current.entry.name == "demo-shapes"
    assert "Euler a" in client.util_get_sampler_names()


def test_wrong_password_is_refused(server):
    port, _ = server
    stranger = webuiapi.WebUIApi(host="127.0.0.1", port=port, username=USER, password="guess")
    with pytest.raises(RuntimeError, match="401"):
        stranger.txt2img(prompt=PROMPT, width=64, height=64, steps=2)


def test_vae_list_and_override_for_one_request(client, server):
    _, engine = server
    vaes = client.get_sd_vae()
    assert [v["model_name"] for v in vaes] == [BRIGHT_VAE] and vaes[0]["filename"].endswith(BRIGHT_VAE)
    own = client.txt2img(prompt=PROMPT, seed=4, width=64, height=64)
    bright = client.txt2img(prompt=PROMPT, seed=4, width=64, height=64, override_settings={"sd_vae": BRIGHT_VAE})
    assert bright.info["sd_vae_name"] == BRIGHT_VAE
    assert np.asarray(bright.image).mean() > np.asarray(own.image).mean() + 20
    assert client.get_options()["sd_vae"] == "Automatic"  # restored afterwards, webuiapi's default too
    assert engine.models.current.vae_selection.choice == "Automatic"


def test_prompt_styles_list_and_apply(client):
    styles = {s["name"]: s for s in client.get_prompt_styles()}
    assert styles["Sunset"] == {"name": "Sunset", "prompt": "a orange {prompt} on a purple background",
                                "negative_prompt": "blue, green"}
    result = client.txt2img(prompt="circle", seed=1, width=64, height=64, styles=["Sunset"])
    assert result.info["all_prompts"] == ["a orange circle on a purple background"]
    assert result.info["all_negative_prompts"] == ["blue, green"] and result.info["styles"] == ["Sunset"]


def scene(size=(40, 32)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((8, 6, 30, 26), fill=(220, 30, 30))
    return image


def test_extra_single_image_and_batch(client):
    single = client.extra_single_image(scene(), upscaler_1="Lanczos", upscaling_resize=2)
    assert single.image.size == (80, 64)
    assert np.array_equal(np.asarray(single.image.convert("RGB")),
                          np.asarray(scene().resize((80, 64), Image.Resampling.LANCZOS)))
    assert "Postprocess upscaler: Lanczos" in single.info  # webuiapi puts html_info there
    batch = client.extra_batch_images([scene(), scene((24, 24))], upscaler_1=TINY_UPSCALER, resize_mode=1,
                                      upscaling_resize_w=96, upscaling_resize_h=48)
    assert [image.size for image in batch.images] == [(96, 48), (96, 48)]
    with pytest.raises(RuntimeError, match="gfpgan_visibility"):
        client.extra_single_image(scene(), upscaler_1="Lanczos", gfpgan_visibility=1)
