"""Two people on one shared, password-protected app: each sees only their own job, and one's Interrupt cannot
stop the other's. Two separate browser contexts (two cookies, two Gradio sessions), signed in as two users."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from browser_support import CHROMIUM, CHROMIUM_ARGS, needs_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, needs_chromium]

ALICE, BOB = ("alice", "alice-password"), ("bob", "bob-password")


@contextmanager
def two_people():
    """Two pages in two separate browser contexts: separate cookies, separate Gradio sessions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in range(2)]
            for page in pages:
                page.set_default_timeout(120_000)
            yield pages
        finally:
            browser.close()


def sign_in(page, url: str, user: tuple[str, str]) -> None:
    page.goto(url)
    page.wait_for_selector("input[type=password]")
    page.locator("input:not([type=password])").first.fill(user[0])
    page.locator("input[type=password]").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#txt2img-prompt textarea")


def start_job(page, prompt: str, seed: int, steps: int) -> None:
    page.fill("#txt2img-prompt textarea", prompt)
    for selector, value in (("#txt2img-seed input", seed), ("#txt2img-steps input[type=number]", steps)):
        page.locator(selector).fill(str(value))
        page.locator(selector).press("Tab")
    page.click("#txt2img-generate")


def status(page) -> str:
    return page.inner_text("#txt2img-status")


def test_one_users_interrupt_cannot_stop_anothers_job(app_config):
    app_config.auth = [ALICE, BOB]
    app_config.preview_every_n_steps = 1
    with running_app(app_config) as (url, engine, _), two_people() as (alice, bob):
        sign_in(alice, url, ALICE)
        sign_in(bob, url, BOB)
        engine.step_hooks.append(lambda info: time.sleep(0.15))  # a job long enough to interrupt
        start_job(alice, "a red circle on a blue background", 111, 30)
        alice.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('step')")
        start_job(bob, "a green square", 222, 30)
        bob.click("#txt2img-interrupt")  # Bob's own job is still waiting behind Alice's
        alice.wait_for_function(
            "document.querySelector('#txt2img-status').innerText.includes('Done')", timeout=180_000)
        bob.wait_for_function(
            "document.querySelector('#txt2img-status').innerText.includes('Interrupted')", timeout=180_000)
        engine.step_hooks.clear()
        screenshot(alice, "isolation-alice")
        screenshot(bob, "isolation-bob-interrupted")
        assert "Done: 1 image(s), seed 111" in status(alice)
        assert alice.locator("#txt2img-gallery img").count() == 1
        assert bob.locator("#txt2img-gallery img").count() == 0  # Bob never sees Alice's result
        assert "seed 111" not in status(bob)
        # Bob's next job runs, and lands in Bob's page only
        start_job(bob, "a green square", 222, 3)
        bob.wait_for_function(
            "document.querySelector('#txt2img-status').innerText.includes('Done')", timeout=180_000)
        assert "Done: 1 image(s), seed 222" in status(bob)
        assert "Seed: 222" in bob.input_value("#txt2img-infotext textarea")
        assert "Seed: 111" in alice.input_value("#txt2img-infotext textarea")
        assert "Done: 1 image(s), seed 111" in status(alice)
        screenshot(bob, "isolation-bob-next-job")
    saved = sorted(app_config.outputs_dir.rglob("*.png"))
    assert [p.name.split("-", 1)[1] for p in saved] == ["111.png", "222.png"]


def test_an_interrupt_mid_run_stops_only_the_interrupters_job(app_config):
    app_config.auth = [ALICE, BOB]
    with running_app(app_config) as (url, engine, _), two_people() as (alice, bob):
        sign_in(alice, url, ALICE)
        sign_in(bob, url, BOB)
        engine.step_hooks.append(lambda info: time.sleep(0.15))
        start_job(bob, "a green square", 222, 30)
        bob.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('step')")
        start_job(alice, "a red circle on a blue background", 111, 10)  # waits behind Bob's running job
        bob.click("#txt2img-interrupt")  # stops Bob's running job; Alice's must still run
        bob.wait_for_function(
            "document.querySelector('#txt2img-status').innerText.includes('Interrupted')", timeout=180_000)
        alice.wait_for_function(
            "document.querySelector('#txt2img-status').innerText.includes('Done')", timeout=180_000)
        engine.step_hooks.clear()
        assert "Done: 1 image(s), seed 111" in status(alice)
        assert bob.locator("#txt2img-gallery img").count() == 0
    saved = sorted(app_config.outputs_dir.rglob("*.png"))
    assert [p.name.split("-", 1)[1] for p in saved] == ["111.png"]
