"""Numbers are handled one way in every tab (issue 14, item 6): a note under the field says what is wrong with
what was typed (a slider that puts the value back into its range says what it was set to), and Generate names a
value that is still wrong in the tab's status line, never in a toast with Error badges on the outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from browser_support import CHROMIUM, CHROMIUM_ARGS, needs_chromium, running_app, screenshot, set_number

pytestmark = [pytest.mark.browser, needs_chromium]

# tab -> (the image input to fill first, or None; whether the tab has width/height fields of its own)
TABS = {
    "txt2img": (None, True),
    "img2img": ("#img2img-image input[type=file]", True),
    "inpaint": ("#inpaint-editor input[type=file]", True),
    "interpolate": (None, True),
    "outpaint": ("#outpaint-image input[type=file]", False),  # the canvas size follows the image
}
TAB_TITLES = {"txt2img": "txt2img", "img2img": "img2img", "inpaint": "Inpaint", "interpolate": "Interpolate",
              "outpaint": "Outpaint"}


@pytest.fixture(scope="module")
def app_url(models_dir, tmp_path_factory):
    from ldm_ui.config import AppConfig

    root = tmp_path_factory.mktemp("numbers")
    config = AppConfig(models_dir=models_dir, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny-sd", preview_method="off")
    with running_app(config) as (url, _engine, _demo):
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def open_tab(page, url: str, tab: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page.goto(url)
    page.wait_for_selector("#txt2img-generate")
    page.get_by_role("tab", name=TAB_TITLES[tab], exact=True).click()
    upload = TABS[tab][0]
    if upload:
        image = tmp_path / "input.png"
        Image.new("RGB", (80, 72), (200, 30, 30)).save(image)
        if tab == "inpaint":  # the image editor takes files once its canvas is drawn
            page.wait_for_selector("#inpaint-editor canvas", state="attached")
        page.set_input_files(upload, str(image))
        if TABS[tab][1]:  # the upload is in once the size fields follow the image
            expect(page.locator(f"#{tab}-width input[type=number]")).to_have_value("80")
        else:
            expect(page.locator(f"#{tab}-image img").first).to_be_visible()


def note(page, field: str):
    return page.locator(f"#{field} .ldm-field-note")


def type_number(page, field: str, value) -> None:
    set_number(page, f"#{field} input[type=number]", value)


def generate_and_read_the_status(page, tab: str, expected: str) -> None:
    """Generate reports the problem in the tab's status line: no toast, no Error badge on any output."""
    from playwright.sync_api import expect

    page.click(f"#{tab}-generate")
    expect(page.locator(f"#{tab}-status")).to_contain_text(expected)
    assert "ldm-status-error" in page.inner_html(f"#{tab}-status")
    assert page.locator(".toast-body").count() == 0, page.locator(".toast-body").all_inner_texts()
    badges = [text for text in page.locator(".error").all_inner_texts() if text.strip()]
    assert not badges, f"Error badges: {badges}"


@pytest.mark.parametrize("tab", list(TABS))
def test_a_wrong_number_is_shown_where_it_is_typed_and_generate_names_it_in_the_status(page, app_url, tab,
                                                                                      tmp_path):
    from playwright.sync_api import expect

    open_tab(page, app_url, tab, tmp_path)
    has_size = TABS[tab][1]
    if has_size:
        type_number(page, f"{tab}-width", 100)  # not a multiple of 8: shown, not changed behind the user's back
        expect(note(page, f"{tab}-width")).to_have_text(
            "Width must be a multiple of 8 (64 to 2048); 100 is not: use 96 or 104.")
        assert page.input_value(f"#{tab}-width input[type=number]") == "100"
        generate_and_read_the_status(page, tab, "width must be a multiple of 8 between 64 and 2048, got 100")

        type_number(page, f"{tab}-height", 30)  # below the range: the slider snaps, and says so
        expect(page.locator(f"#{tab}-height input[type=number]")).to_have_value("64")
        expect(note(page, f"{tab}-height")).to_have_text(
            "Height: 30 is below the minimum 64; it was set to 64 (allowed: 64 to 2048).")
        type_number(page, f"{tab}-width", 96)
        expect(note(page, f"{tab}-width")).to_be_hidden()  # a good value clears the note

    type_number(page, f"{tab}-steps", 1000)
    expect(page.locator(f"#{tab}-steps input[type=number]")).to_have_value("150")
    expect(note(page, f"{tab}-steps")).to_have_text(
        "Sampling steps: 1000 is above the maximum 150; it was set to 150 (allowed: 1 to 150).")

    type_number(page, f"{tab}-seed", 99999999999)  # a number field does not snap: it says what is allowed
    seed_label = "Seed A" if tab == "interpolate" else "Seed"  # the field's own label, without "(-1 = random)"
    expect(note(page, f"{tab}-seed")).to_have_text(
        f"{seed_label} must be -1 to 4294967295; 99999999999 is above the maximum.")
    generate_and_read_the_status(
        page, tab, "seed must be between -1 and 4294967295 (-1 picks a random seed), got 99999999999")
    screenshot(page, f"numbers-{tab}")


def test_the_hires_fields_follow_the_same_rule(page, app_url, tmp_path):
    from playwright.sync_api import expect

    open_tab(page, app_url, "txt2img", tmp_path)
    page.click("#txt2img-hires")
    page.locator("#txt2img-hires-enabled input").check()
    type_number(page, "txt2img-hires-steps", 1000)
    expect(page.locator("#txt2img-hires-steps input[type=number]")).to_have_value("150")
    expect(note(page, "txt2img-hires-steps")).to_contain_text("1000 is above the maximum 150; it was set to 150")
    type_number(page, "txt2img-hires-width", 100)
    expect(note(page, "txt2img-hires-width")).to_contain_text("must be a multiple of 8 (0 to 2048); 100 is not")
    generate_and_read_the_status(page, "txt2img", "hires resize width (0 = from the upscale factor) must be a "
                                                  "multiple of 8 between 64 and 2048, got 100")
