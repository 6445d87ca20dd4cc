"""A user runs a 4-frame interpolation in the browser and inspects an image's latent; a script calls /interpolate."""

from __future__ import annotations

import math
import re
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from browser_support import ARTIFACTS, browser_page, needs_chromium, running_app, screenshot, set_number
from conftest import TINY
from ldm_ui.config import PROJECT_ROOT, AppConfig


DEMO_DIR = PROJECT_ROOT / "models" / "diffusers" / "demo-shapes"


@pytest.fixture(scope="module")
def served(models_dir, tmp_path_factory):
    """One running app for this module's tests, on the demo model once it exists (its frames show a real walk
    in the screenshot), else on the tiny random model."""
    root = tmp_path_factory.mktemp("interpolate-app")
    demo = (DEMO_DIR / "model_index.json").is_file()
    config = AppConfig(models_dir=PROJECT_ROOT / "models" if demo else models_dir, outputs_dir=root / "outputs",
                       cache_dir=root / "cache", default_model="demo-shapes" if demo else TINY)
    with running_app(config) as (url, engine, _):
        yield url, engine, config


@pytest.mark.browser
@needs_chromium
def test_four_frame_interpolation_fills_the_gallery_and_makes_animations(served):
    url, _, app_config = served
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Interpolate").click()
        # each mode shows only the inputs it uses
        assert page.locator("#interpolate-image-a").is_hidden() and page.locator("#interpolate-seed-b").is_hidden()
        page.get_by_label("images").check()
        page.wait_for_selector("#interpolate-image-a", state="visible")
        assert page.locator("#interpolate-prompt-b").is_hidden()
        page.get_by_label("prompts").check()
        page.wait_for_selector("#interpolate-prompt-b", state="visible")
        page.fill("#interpolate-prompt textarea", "a red circle on a white background")
        page.fill("#interpolate-prompt-b textarea", "a blue circle on a white background")
        set_number(page, "#interpolate-frames input[type=number]", 4)
        set_number(page, "#interpolate-steps input[type=number]", 20)
        set_number(page, "#interpolate-seed input", 21)
        page.check("#interpolate-ping-pong input")
        page.click("#interpolate-generate")
        saw_partial_gallery = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            count = page.locator("#interpolate-gallery img").count()
            saw_partial_gallery |= 0 < count < 4
            if page.locator("#interpolate-video video").count() > 0:
                break
            time.sleep(0.05)
        page.wait_for_selector("#interpolate-video video")
        page.wait_for_selector("#interpolate-gif img")
        page.wait_for_function("document.querySelector('#interpolate-status').innerText.includes('Done')")
        status = page.inner_text("#interpolate-status")
        frames_shown = page.locator("#interpolate-gallery img").count()
        downloads = page.inner_text("#interpolate-files").replace("\n", "")
        shot = screenshot(page, "interpolate")
    assert saw_partial_gallery, "frames should appear one by one, not all at the end"
    assert frames_shown == 4
    assert "Done: 4 image(s)" in status and "6 frames at 8 fps, ping-pong" in status
    assert "interpolation.gif" in downloads and "interpolation.mp4" in downloads
    run_folders = [f for f in (app_config.outputs_dir / "interpolate").glob("*/*") if f.name.endswith("prompts")]
    assert len(run_folders) == 1 and len(list(run_folders[0].glob("*.png"))) == 4
    assert shot.stat().st_size > 20_000


@pytest.mark.browser
@needs_chromium
def test_latent_inspector_shows_sizes_channels_and_psnr(served):
    url, engine, _ = served
    ARTIFACTS.mkdir(exist_ok=True)
    upload = ARTIFACTS / "inspector-input.png"
    image = Image.new("RGB", (128, 96), "white")
    ImageDraw.Draw(image).ellipse((30, 20, 90, 80), fill="red")
    image.save(upload)
    with browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="Latent inspector").click()
        page.locator("#inspector-image input[type=file]").set_input_files(str(upload))
        page.wait_for_function("document.querySelector('#inspector-summary').innerText.includes('PSNR')")
        page.wait_for_selector("#inspector-channels img")
        summary = page.inner_text("#inspector-summary")
        channel_count = page.locator("#inspector-channels img").count()
        shot = screenshot(page, "latent-inspector")
        pipe = engine.models.current.pipe
    import torch

    with torch.no_grad():
        x = pipe.image_processor.preprocess(image)
        latent = pipe.vae.encode(x).latent_dist.mean
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(latent).sample, output_type="pil")[0]
    mse = np.mean((np.asarray(image, np.float64) - np.asarray(decoded, np.float64)) ** 2)
    psnr = 10 * math.log10(255 ** 2 / mse)
    assert tuple(latent.shape) == (1, 4, 12, 16)
    assert "128×96×3 = 36,864 values" in summary
    assert "16×12×4 = 768 values" in summary and "48× smaller" in summary
    assert float(re.search(r"PSNR: ([\d.]+) dB", summary)[1]) == pytest.approx(psnr, abs=0.011)
    assert channel_count == 4
    assert shot.stat().st_size > 20_000


def test_interpolate_api_endpoint_takes_named_settings(served):
    from gradio_client import Client

    client = Client(served[0], verbose=False)
    api = client.view_api(return_format="dict", print_info=False)
    params = {p["parameter_name"] for p in api["named_endpoints"]["/interpolate"]["parameters"]}
    assert {"mode", "prompt", "prompt_b", "seed", "seed_b", "frames", "easing", "fps", "ping_pong"} <= params
    result = client.predict(mode="seeds", prompt="a red circle", seed=3, seed_b=4, frames=3, steps=2,
                            api_name="/interpolate")
    gallery, gif, files = result[2], result[5], result[6]  # the State output is not returned
    assert len(gallery) == 3
    paths = [f["path"] if isinstance(f, dict) else f for f in files]
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["interpolation.gif", "interpolation.mp4"]
    with Image.open(gif if isinstance(gif, str) else gif["path"]) as animation:
        assert animation.n_frames == 3
