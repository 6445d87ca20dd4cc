"""Two users signed in at once, each in their own browser context: each makes an image, and each one's History
lists only their own (with its infotext); Bob's delete leaves Alice's image alone. A file no job made is nobody's."""

from __future__ import annotations

import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from browser_support import CHROMIUM, CHROMIUM_ARGS, needs_chromium, running_app, screenshot, set_number
from test_security_guard import BOB, BOB_PASSWORD, PASSWORD, USER

pytestmark = [pytest.mark.browser, needs_chromium]

SUMMARY = "document.querySelector('#history-summary').innerText.includes({text!r})"
INFOTEXT = "document.querySelector('#history-infotext textarea').value.includes({text!r})"


def signed_in_page(browser, url: str, user: str, password: str):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    # the context's request client shares its cookie jar, so the page opens signed in
    assert context.request.post(f"{url}/login", form={"username": user, "password": password}).ok
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def generate(page, prompt: str, seed: int) -> None:
    page.fill("#txt2img-prompt textarea", prompt)
    set_number(page, "#txt2img-steps input[type=number]", 2)
    set_number(page, "#txt2img-seed input", seed)
    page.click("#txt2img-generate")
    page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')", timeout=120_000)


def open_history(page) -> None:
    page.get_by_role("tab", name="History").click()
    page.wait_for_selector("#history-summary")


def test_each_user_sees_only_their_own_history(app_config):
    app_config.listen = True
    app_config.auth = [(USER, PASSWORD), (BOB, BOB_PASSWORD)]
    not_a_job = app_config.outputs_dir / "txt2img" / "old" / "00000-5.png"  # from before logins were on
    not_a_job.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(not_a_job)
    with running_app(app_config) as (url, _engine, _demo), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            alice = signed_in_page(browser, url, USER, PASSWORD)
            bob = signed_in_page(browser, url, BOB, BOB_PASSWORD)
            generate(alice, "alice's red circle", 111)
            generate(bob, "bob's blue square", 222)

            open_history(alice)
            alice.wait_for_function(SUMMARY.format(text="1 image(s)"))
            alice.click("#history-gallery button[aria-label='Thumbnail 1 of 1']")
            alice.wait_for_function(INFOTEXT.format(text="Seed: 111"))
            alice_infotext = alice.input_value("#history-infotext textarea")
            screenshot(alice, "history-alice")

            open_history(bob)
            bob.wait_for_function(SUMMARY.format(text="1 image(s)"))
            bob.fill("#history-search textarea", "red circle")  # Alice's prompt: not found in Bob's history
            bob.press("#history-search textarea", "Enter")
            bob.wait_for_function(SUMMARY.format(text="0 image(s) matching"))
            bob.fill("#history-search textarea", "")
            bob.press("#history-search textarea", "Enter")
            bob.wait_for_function(SUMMARY.format(text="1 image(s); page"))
            bob.click("#history-gallery button[aria-label='Thumbnail 1 of 1']")
            bob.wait_for_function(INFOTEXT.format(text="Seed: 222"))
            bob_infotext = bob.input_value("#history-infotext textarea")
            bob.click("#history-delete")
            bob.wait_for_function(SUMMARY.format(text="0 image(s)"))

            alice.click("#history-refresh")
            alice.wait_for_function("document.querySelector('#history-infotext textarea').value === ''")
            alice_after = alice.inner_text("#history-summary")
        finally:
            browser.close()

    assert "alice's red circle" in alice_infotext and "bob" not in alice_infotext
    assert "bob's blue square" in bob_infotext and "alice" not in bob_infotext
    assert "1 image(s)" in alice_after
    kept = [p for p in app_config.outputs_dir.rglob("*.png") if ".trash" not in p.parts]
    assert sorted(p.name for p in kept) == ["00000-111.png", "00000-5.png"]  # Bob's went to the trash
