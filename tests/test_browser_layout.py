"""Layout leftovers a new user trips over (issue 14, item 11), checked in the browser: the preset box tops each
tab, inpaint's Clear mask keeps the image, the LoRA/ControlNet tab's "Loaded on" line is current when opened,
PNG info shows what Send to does not apply under its own heading, gallery captions are whole, and seed-walk
frames are captioned as what they are.
"""

from __future__ import annotations

import re

import pytest
from PIL import Image

from adapter_files import random_lora, write_diffusers_lora
from browser_support import browser, needs_chromium, running_app, screenshot, set_number  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def app(models_dir, tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    from ldm_ui.config import AppConfig

    root = tmp_path_factory.mktemp("layout")
    base = StableDiffusionPipeline.from_pretrained(models_dir / "diffusers" / "tiny-sd")
    write_diffusers_lora(root / "loras" / "tiny-style.safetensors", random_lora(base.unet, seed=4))
    config = AppConfig(models_dir=models_dir, outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny-sd", preview_method="off", lora_dirs=[root / "loras"])
    with running_app(config) as (url, engine, _demo):
        yield url, config


@pytest.fixture
def page(app, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(app[0])
    page.wait_for_selector("#txt2img-generate")
    yield page
    context.close()


def open_tab(page, title: str) -> None:
    page.get_by_role("tab", name=title, exact=True).click()


def generate(page, tab: str = "txt2img", prompt: str = "a red circle on a blue background") -> None:
    from playwright.sync_api import expect

    page.fill(f"#{tab}-prompt textarea", prompt)
    set_number(page, f"#{tab}-steps input[type=number]", 2)
    page.click(f"#{tab}-generate")
    expect(page.locator(f"#{tab}-status")).to_contain_text("Done")


def test_the_preset_box_tops_each_tab(page):
    for title, tab in (("txt2img", "txt2img"), ("img2img", "img2img"), ("Inpaint", "inpaint"),
                       ("Outpaint", "outpaint"), ("Interpolate", "interpolate")):
        open_tab(page, title)
        box = page.locator(f"#{tab}-preset-box").first.bounding_box()  # Gradio puts a Group's id on two divs
        prompt = page.locator(f"#{tab}-prompt").bounding_box()
        assert box and prompt and box["y"] + box["height"] <= prompt["y"], (tab, box, prompt)
        assert box["y"] < 260, f"{tab}: the preset box starts {box['y']:.0f} px down, not at the tab's top"


def test_clear_mask_removes_the_strokes_and_keeps_the_image(page, tmp_path):
    from playwright.sync_api import expect

    open_tab(page, "Inpaint")
    picture = tmp_path / "blue.png"
    Image.new("RGB", (80, 72), (30, 60, 220)).save(picture)
    page.wait_for_selector("#inpaint-editor canvas", state="attached")  # the editor takes files once it is drawn
    page.set_input_files("#inpaint-editor input[type=file]", str(picture))
    expect(page.locator("#inpaint-width input[type=number]")).to_have_value("80")  # the upload is in
    canvas = page.locator("#inpaint-editor canvas").first
    page.wait_for_function("el => el.getBoundingClientRect().width > 100", arg=canvas.element_handle())
    box = canvas.bounding_box()
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    for step in range(12):
        page.mouse.move(box["x"] + box["width"] * (0.4 + step * 0.02), y)
    page.mouse.up()
    generate(page, "inpaint")  # the stroke is a mask: the job runs

    page.click("#inpaint-clear-mask")
    expect(page.locator("#inpaint-status")).to_contain_text("Mask cleared; the image stays.")
    set_number(page, "#inpaint-steps input[type=number]", 3)
    status = page.locator("#inpaint-status")
    for attempt in range(2):
        page.click("#inpaint-generate")
        expect(status).to_contain_text(re.compile("the mask is empty|not an image Pillow can read"))
        # Gradio's editor exports its layers on Generate; pressed while it still redraws the image given back to
        # it, the export can be an unreadable file (the status says so; seen in two CI runs): press it once more
        if "not an image Pillow can read" not in status.inner_text():
            break
    expect(status).to_contain_text("the mask is empty")  # the strokes are gone ...
    assert "no image" not in status.inner_text()  # ... and the image is still there
    screenshot(page, "inpaint-clear-mask")


def test_the_loaded_on_line_is_current_whenever_the_tab_is_opened(page, app):
    from playwright.sync_api import expect

    open_tab(page, "LoRA/ControlNet")
    loaded = page.locator("#adapters-loaded")
    expect(loaded).to_contain_text("Loaded on tiny-sd: LoRA adapters: none")
    assert "loras/tiny-style.safetensors" in page.inner_text("#adapters-lora-table")
    assert str(app[1].outputs_dir.parent) not in page.inner_text("body"), "a server path is shown"
    open_tab(page, "txt2img")
    generate(page, prompt="a red circle <lora:tiny-style:1>")
    open_tab(page, "LoRA/ControlNet")  # no Refresh click
    expect(loaded).to_contain_text(re.compile(r"LoRA adapters: .*tiny_style"))


def test_png_info_lists_what_send_to_does_not_apply_under_its_own_heading(page, app):
    from playwright.sync_api import expect

    generate(page)
    saved = sorted((app[1].outputs_dir / "txt2img").rglob("*.png"))[-1]
    open_tab(page, "PNG info")
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(saved))
    shown_only = page.locator("#pnginfo-shown-only")
    expect(shown_only).to_contain_text("Model")
    expect(page.locator("#pnginfo-applied")).to_contain_text("Seed")
    assert "Model" not in page.inner_text("#pnginfo-applied")
    assert "(kept)" not in page.inner_text("body")
    screenshot(page, "pnginfo-also-recorded")


def test_seed_walk_frames_are_captioned_as_what_they_are_and_captions_are_whole(page):
    from playwright.sync_api import expect

    open_tab(page, "Interpolate")
    page.get_by_label("seeds", exact=True).check()
    set_number(page, "#interpolate-seed input", 11)
    set_number(page, "#interpolate-seed-b input", 22)
    set_number(page, "#interpolate-frames input[type=number]", 3)
    generate(page, "interpolate")
    captions = page.locator("#interpolate-gallery .caption-label")
    expect(captions).to_have_count(3)
    assert captions.all_inner_texts() == ["64x64 · frame 1/3 · seed 11", "64x64 · frame 2/3 · seed 11→22 at 50%",
                                          "64x64 · frame 3/3 · seed 22"]
    for caption in captions.all():
        cut = caption.evaluate("el => el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 1")
        assert not cut, f"caption cut off: {caption.inner_text()!r}"
    screenshot(page, "interpolate-captions")
