"""A user opens History, sees their latest image first with its infotext, deletes it and undoes the delete."""

from __future__ import annotations

import pytest

from browser_support import browser_page, needs_chromium, running_app, set_number

pytestmark = [pytest.mark.browser, needs_chromium]


def test_browse_delete_and_undo(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.fill("#txt2img-prompt textarea", "a red circle on a blue background")
        set_number(page, "#txt2img-steps input[type=number]", 2)
        set_number(page, "#txt2img-seed input", 4321)
        page.click("#txt2img-generate")
        page.wait_for_function("document.querySelector('#txt2img-status').innerText.includes('Done')",
                               timeout=120_000)
        set_number(page, "#txt2img-seed input", 1)
        page.fill("#txt2img-prompt textarea", "something else")
        page.get_by_role("tab", name="History").click()
        page.wait_for_function("document.querySelector('#history-summary').innerText.includes('1 image(s)')")
        page.click("#history-gallery button[aria-label='Thumbnail 1 of 1']")
        page.wait_for_function("document.querySelector('#history-infotext textarea').value.includes('Seed: 4321')")
        page.click("#history-delete")
        page.wait_for_function("document.querySelector('#history-summary').innerText.includes('0 image(s)')")
        after_delete = sorted(p.name for p in app_config.outputs_dir.rglob("*.png"))
        page.click("#history-undo")
        page.wait_for_function("document.querySelector('#history-summary').innerText.includes('1 image(s)')")
        note = page.inner_text("#history-note")
        page.click("#history-gallery button[aria-label='Thumbnail 1 of 1']")
        page.wait_for_function("document.querySelector('#history-infotext textarea').value.includes('Seed: 4321')")
        page.click("#history-send-txt2img")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '4321'")
        txt2img_prompt = page.input_value("#txt2img-prompt textarea")
        page.get_by_role("tab", name="History").click()
        page.wait_for_function("document.querySelector('#history-infotext textarea').value === ''")
        page.click("#history-gallery button[aria-label='Thumbnail 1 of 1']")
        page.wait_for_function("document.querySelector('#history-infotext textarea').value.includes('Seed: 4321')")
        page.click("#history-send-img2img")
        page.wait_for_selector("#img2img-image img", state="visible")
        img2img_prompt = page.input_value("#img2img-prompt textarea")
    trashed = [p for p in app_config.outputs_dir.rglob("*.png") if ".trash" in p.parts]
    assert after_delete == ["00000-4321.png"]  # the one in the trash
    assert "Restored 00000-4321.png" in note and trashed == []
    assert txt2img_prompt == "a red circle on a blue background"
    assert img2img_prompt == "a red circle on a blue background"
