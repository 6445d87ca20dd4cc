"""A user opens the page, types a prompt, clicks Generate, and watches previews arrive before the image."""

from __future__ import annotations

import time

import pytest

from browser_support import browser_page, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def test_generate_shows_previews_then_image(app_config):
    app_config.preview_every_n_steps = 1
    with running_app(app_config) as (url, engine, _), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        # 150 steps: the job outlasts several of the stream's 0.2 s update slots even on a fast machine (at 40
        # steps the sped-up engine could finish within one, and the preview never reached the page)
        set_number(page, "#txt2img-steps input[type=number]", 150)
        set_number(page, "#txt2img-seed input", 1234)
        page.click("#txt2img-generate")
        saw_preview_first = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            has_image = page.locator("#txt2img-gallery img").count() > 0
            if page.locator("#txt2img-preview img").count() > 0 and not has_image:
                saw_preview_first = True
            if has_image:
                break
            time.sleep(0.02)
        page.wait_for_selector("#txt2img-gallery img")
        page.wait_for_function(
            "document.querySelector('#txt2img-infotext textarea').value.includes('Seed: 1234')")
        shot = screenshot(page, "txt2img")
        infotext = page.input_value("#txt2img-infotext textarea")
        status = page.inner_text("#txt2img-status")
    assert saw_preview_first, "no live preview was shown before the final image"
    assert "a red circle on a blue background" in infotext and "Steps: 150" in infotext
    assert "Done: 1 image(s), seed 1234" in status
    assert shot.stat().st_size > 10_000
    saved = list((app_config.outputs_dir / "txt2img").rglob("*.png"))
    assert len(saved) == 1
