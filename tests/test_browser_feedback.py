"""What a user sees while jobs run (issue 14): queue places, Interrupt, one job per click, keys, bad uploads,
failed model switches and enlarged small inputs. One app serves every test here; jobs are held at a chosen step
by an engine step hook, so each test waits for what the page shows, never for time to pass.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from browser_support import browser, needs_chromium, running_app, screenshot, set_number  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def app(models_dir, tmp_path_factory):
    from ldm_ui.config import AppConfig

    root = tmp_path_factory.mktemp("feedback")
    config = AppConfig(models_dir=models_dir, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny-sd", preview_method="off")
    with running_app(config) as (url, engine, _demo):
        yield url, engine


@pytest.fixture
def open_page(app, browser):
    """open_page() -> a fresh page (its own browser context: another user) on the app."""
    contexts = []

    def open_one():
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app[0])
        page.wait_for_selector("#txt2img-generate")
        return page

    yield open_one
    for context in contexts:
        context.close()


@contextmanager
def held_at_step(engine, prompt: str, step: int):
    """Jobs with this prompt stop at `step` (1-based, as the status counts) until the block ends or release()."""
    gate = threading.Event()

    def hold(info):
        if info.request.prompt == prompt and info.step + 1 == step:
            gate.wait(60)

    engine.step_hooks.append(hold)
    try:
        yield gate
    finally:
        gate.set()
        engine.step_hooks.remove(hold)


@contextmanager
def started_jobs(engine):
    """The requests of the jobs the worker starts inside the block."""
    from ldm_ui.requests import Started

    started = []
    listener = lambda job, event: started.append(job.request) if isinstance(event, Started) else None  # noqa: E731
    engine.event_listeners.append(listener)
    try:
        yield started
    finally:
        engine.event_listeners.remove(listener)


def status(page, tab: str = "txt2img"):
    return page.locator(f"#{tab}-status")


def test_a_second_user_sees_the_queue_and_interrupt_removes_the_queued_job(app, open_page):
    from playwright.sync_api import expect

    url, engine = app
    first, second = open_page(), open_page()
    with held_at_step(engine, "first user", 2) as release:
        first.fill("#txt2img-prompt textarea", "first user")
        set_number(first, "#txt2img-steps input[type=number]", 4)
        first.click("#txt2img-generate")
        expect(status(first)).to_contain_text("step 1/4")
        second.fill("#txt2img-prompt textarea", "second user")
        second.click("#txt2img-generate")
        expect(status(second)).to_contain_text("Queued: 1 job(s) ahead.")
        expect(status(first)).not_to_contain_text("Queued")
        second.click("#txt2img-interrupt")
        expect(status(second)).to_contain_text(re.compile("removed from the queue", re.IGNORECASE))
        release.set()
        expect(status(first)).to_contain_text("Done: 1 image(s)")
    assert second.locator("#txt2img-gallery img").count() == 0


def test_interrupt_is_shown_at_once_and_stops_the_counter_and_a_double_click_runs_one_job(app, open_page):
    from playwright.sync_api import expect

    url, engine = app
    page = open_page()
    page.fill("#txt2img-prompt textarea", "interrupt me")
    set_number(page, "#txt2img-steps input[type=number]", 150)
    with started_jobs(engine) as started, held_at_step(engine, "interrupt me", 20) as release:
        page.dblclick("#txt2img-generate")
        expect(status(page)).to_contain_text("step 19/150")
        generate = page.locator("#txt2img-generate")
        expect(generate).to_be_disabled()
        expect(generate).to_contain_text("running")
        page.click("#txt2img-interrupt")
        expect(status(page)).to_contain_text("Interrupting")
        release.set()
        expect(status(page)).to_contain_text(re.compile(r"Interrupted at step \d+/150"))
        expect(generate).to_be_enabled()
        stopped = int(re.search(r"Interrupted at step (\d+)/150", status(page).inner_text()).group(1))
        assert stopped <= 21, f"the job ran on to step {stopped} after Interrupt"
        expect(generate).to_have_text("Generate")
    assert [r.prompt for r in started] == ["interrupt me"], "the double click queued more than one job"


def test_ctrl_enter_generates_escape_interrupts_and_enter_is_a_newline(app, open_page):
    from playwright.sync_api import expect

    url, engine = app
    page = open_page()
    page.click("#txt2img-prompt textarea")
    page.keyboard.type("line one")
    page.keyboard.press("Enter")
    page.keyboard.type("line two")
    assert page.input_value("#txt2img-prompt textarea") == "line one\nline two"
    expect(status(page)).to_contain_text("Ready.")
    with held_at_step(engine, "line one\nline two", 2):
        page.keyboard.press("Control+Enter")
        expect(status(page)).to_contain_text("step 1/20")
        page.keyboard.press("Escape")
        expect(status(page)).to_contain_text("Interrupting")
    expect(status(page)).to_contain_text("Interrupted at step")
    # the same keys in another tab act on that tab
    page.get_by_role("tab", name="Interpolate", exact=True).click()
    page.fill("#interpolate-prompt textarea", "a red circle")
    page.fill("#interpolate-prompt-b textarea", "a blue circle")
    with held_at_step(engine, "a red circle", 1):
        page.press("#interpolate-prompt textarea", "Control+Enter")
        expect(status(page, "interpolate")).to_contain_text("Starting")
        page.keyboard.press("Escape")
    expect(status(page, "interpolate")).to_contain_text("Interrupted")


def png_file(path: Path, size=(64, 64), color=(200, 30, 30)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_a_broken_upload_is_one_line_in_the_status_and_the_results_stay(app, open_page, tmp_path):
    from playwright.sync_api import expect

    page = open_page()
    page.get_by_role("tab", name="img2img", exact=True).click()
    page.set_input_files("#img2img-image input[type=file]", str(png_file(tmp_path / "red.png")))
    image = page.locator("#img2img-image img").first
    expect(image).to_be_visible()
    box = image.bounding_box()
    assert box["width"] >= 250, f"a 64 px input is shown {box['width']:.0f} px wide; small inputs are enlarged"
    assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
    set_number(page, "#img2img-steps input[type=number]", 2)
    page.click("#img2img-generate")
    expect(status(page, "img2img")).to_contain_text("Done: 1 image(s)")
    expect(page.locator("#img2img-gallery img").first).to_be_visible()

    truncated = tmp_path / "broken.png"
    truncated.write_bytes(png_file(tmp_path / "whole.png").read_bytes()[:120])
    page.locator("#img2img-image button[aria-label='Remove Image']").first.click()
    page.set_input_files("#img2img-image input[type=file]", str(truncated))
    page.click("#img2img-generate")
    expect(status(page, "img2img")).to_contain_text("input image")
    line = status(page, "img2img").inner_text()
    assert "\n" not in line.strip() and "ldm-status-error" in page.inner_html("#img2img-status"), line
    assert page.locator(".toast-body").count() == 0, "a Gradio toast was shown"
    expect(page.locator("#img2img-gallery img").first).to_be_visible()  # the previous result is still there
    screenshot(page, "img2img-broken-upload")


def test_a_failed_model_switch_returns_the_selector_to_the_loaded_model(app, open_page):
    from playwright.sync_api import expect

    page = open_page()
    selector = page.locator("#model-select input")
    selector.fill("nobody/no-such-model-offline")
    selector.press("Enter")
    error = page.locator("#model-error")
    expect(error).to_contain_text("Could not load 'nobody/no-such-model-offline'")
    expect(error).to_contain_text(re.compile("'tiny-sd' (is still loaded|stays selected)"))
    assert "JobFailed" not in error.inner_text()
    expect(selector).to_have_value("tiny-sd")
    assert error.bounding_box()["width"] > 1000, "the error is squeezed into the header column"
    set_number(page, "#txt2img-steps input[type=number]", 2)
    page.click("#txt2img-generate")
    expect(status(page)).to_contain_text("Done: 1 image(s)")


def test_the_page_is_served_while_the_model_loads(models_dir, tmp_path, browser):
    """app.py queues the first model load after building the page: the header says so, and a job queues behind."""
    from playwright.sync_api import expect

    import app
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import LoadModelRequest, Started
    from browser_support import free_port

    config = AppConfig(models_dir=models_dir, outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache",
                       default_model="tiny-sd", preview_method="off", port=free_port())
    engine, loading = Engine(config), threading.Event()

    def hold_the_load(job, event):  # on the worker: the load waits until the test has seen the page say so
        if isinstance(job.request, LoadModelRequest) and isinstance(event, Started):
            loading.wait(60)

    engine.event_listeners.append(hold_the_load)
    engine, demo = app.create_app(config, engine=engine)
    demo.launch(**app.launch_kwargs(config), prevent_thread_lock=True, quiet=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{config.port}")
        expect(page.locator("#model-status")).to_contain_text("Loading model tiny-sd")
        set_number(page, "#txt2img-steps input[type=number]", 2)
        page.click("#txt2img-generate")
        expect(status(page)).to_contain_text("Queued: 1 job(s) ahead.")
        loading.set()
        expect(page.locator("#model-status")).to_contain_text("tiny-sd")
        expect(page.locator("#model-status")).to_contain_text("native 64px")
        expect(status(page)).to_contain_text("Done: 1 image(s)")
    finally:
        loading.set()
        context.close()
        demo.close()
        engine.shutdown()


def test_reuse_seed_takes_the_selected_images_seed_in_every_tab(app, open_page):
    from playwright.sync_api import expect

    page = open_page()
    page.fill("#txt2img-prompt textarea", "two circles")
    set_number(page, "#txt2img-steps input[type=number]", 2)
    set_number(page, "#txt2img-seed input", 500)
    set_number(page, "#txt2img-batch-size input[type=number]", 2)
    page.click("#txt2img-generate")
    expect(status(page)).to_contain_text("seeds 500–501")
    page.locator("#txt2img-gallery .thumbnail-item").first.click()
    expect(page.locator("#txt2img-infotext textarea")).to_have_value(re.compile("Seed: 500,"))
    set_number(page, "#txt2img-seed input", -1)
    page.click("#txt2img-reuse-seed")
    expect(page.locator("#txt2img-seed input")).to_have_value("500")  # the selected first image, not the last
    for tab in ("img2img", "Inpaint", "Interpolate"):
        page.get_by_role("tab", name=tab, exact=True).click()
        expect(page.locator(f"#{tab.lower()}-reuse-seed")).to_be_visible()


def test_skip_ends_the_current_image_and_the_batch_goes_on(app, open_page):
    from playwright.sync_api import expect

    url, engine = app
    page = open_page()
    page.fill("#txt2img-prompt textarea", "skip one")
    set_number(page, "#txt2img-steps input[type=number]", 4)
    set_number(page, "#txt2img-batch-count input[type=number]", 3)
    with held_at_step(engine, "skip one", 2) as release:
        page.click("#txt2img-generate")
        expect(status(page)).to_contain_text("batch 1/3 · step 1/4")
        page.click("#txt2img-skip")
        expect(status(page)).to_contain_text("Skipping the current image")
        release.set()
        expect(status(page)).to_contain_text("Done: 2 image(s)")
    expect(page.locator("#txt2img-gallery .thumbnail-item")).to_have_count(2)
