"""Run the real app in-process on a free loopback port and drive it with Playwright + Debian's chromium."""

from __future__ import annotations

import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(config, banner: str | None = None, wait_for_model: bool = True) -> Iterator[tuple[str, object, object]]:
    """Yield (url, engine, blocks) for the app built exactly as app.py builds it; by default once the first model
    (which app.py loads in the background) is in."""
    import app

    config.port = free_port()
    engine, demo = app.create_app(config, banner)
    if wait_for_model:
        demo.ldm_ui.startup.wait(120)
    # with config.api the /sdapi/v1 routes are mounted, as app.py does (create_api gives None without it)
    demo.launch(**app.launch_kwargs(config, app.create_api(config, engine, demo)), prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{config.port}", engine, demo
    finally:
        demo.close()
        engine.shutdown()


@pytest.fixture(scope="module")
def browser():
    """One chromium for a test module (a fixture: import it into the module); each test opens its own context."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def set_number(page, selector: str, value) -> None:
    """Type a value into a number field and leave it, so Gradio sees the change before the next click."""
    field = page.locator(selector)
    field.fill(str(value))
    field.press("Tab")


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
