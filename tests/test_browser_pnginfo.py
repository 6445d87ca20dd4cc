"""A user drops an AUTOMATIC1111 PNG into PNG info, reads its settings, and sends them to txt2img; then picks a
preset in txt2img and sees the widgets change."""

from __future__ import annotations

import pytest
from PIL import Image, PngImagePlugin

from browser_support import browser_page, needs_chromium, running_app, screenshot

pytestmark = [pytest.mark.browser, needs_chromium]

PARAMETERS = (
    "a red circle on a blue background, <lora:add_detail:0.8>\n"
    "second line, with a comma\n"
    "Negative prompt: green, blurry\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 987654, Size: 512x768, "
    'Model hash: 6ce0161689, Model: some-model, Hires upscale: 2, Lora hashes: "add_detail: 7c6bad76eb54", '
    "Version: v1.10.1"
)


def number(page, elem_id: str) -> float:
    return float(page.input_value(f"#{elem_id} input[type=number]"))


def test_drop_png_then_send_to_txt2img(app_config, tmp_path):
    png = tmp_path / "from-a1111.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", PARAMETERS)
    Image.new("RGB", (96, 64), (40, 60, 200)).save(png, pnginfo=info)

    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="PNG info").click()
        page.locator("#pnginfo-image input[type=file]").set_input_files(str(png))
        page.wait_for_function("document.querySelector('#pnginfo-result').innerText.includes('Lora hashes')")
        result = page.inner_text("#pnginfo-result")
        shot_info = screenshot(page, "pnginfo")
        page.click("#pnginfo-send-txt2img")
        page.wait_for_selector("#txt2img-prompt textarea", state="visible")
        page.wait_for_function(
            "document.querySelector('#txt2img-prompt textarea').value.includes('second line')")
        page.wait_for_function("document.querySelector('#txt2img-seed input').value === '987654'")
        prompt = page.input_value("#txt2img-prompt textarea")
        negative = page.input_value("#txt2img-negative-prompt textarea")
        sampler = page.input_value("#txt2img-sampler input")
        values = {key: number(page, f"txt2img-{key}") for key in ("steps", "cfg", "width", "height")}
        seed = page.input_value("#txt2img-seed input")
        shot_sent = screenshot(page, "pnginfo-sent-to-txt2img")

        # a preset picked in the same tab replaces sampler, steps, CFG and size
        page.click("#txt2img-preset input")
        page.get_by_role("option", name="sd15", exact=True).click()
        page.wait_for_function(
            "document.querySelector('#txt2img-steps input[type=number]').value === '25'")
        preset_sampler = page.input_value("#txt2img-sampler input")
        preset_status = page.inner_text("#txt2img-preset-status")
        preset_values = {key: number(page, f"txt2img-{key}") for key in ("steps", "cfg", "width", "height")}
        screenshot(page, "preset-applied")

        # img2img gets the dropped image as its input, besides the settings
        page.get_by_role("tab", name="PNG info").click()
        page.click("#pnginfo-send-img2img")
        page.wait_for_selector("#img2img-image img", state="visible")
        page.wait_for_function(
            "document.querySelector('#img2img-prompt textarea').value.includes('second line')")
        img2img_seed = page.input_value("#img2img-seed input")
        img2img_size = page.evaluate("(() => { const i = document.querySelector('#img2img-image img');"
                                     " return [i.naturalWidth, i.naturalHeight]; })()")
        screenshot(page, "pnginfo-sent-to-img2img")

    for shown in ("Prompt", "Negative prompt", "green, blurry", "Hires upscale", "7c6bad76eb54", "v1.10.1"):
        assert shown in result, shown
    assert prompt == "a red circle on a blue background, <lora:add_detail:0.8>\nsecond line, with a comma"
    assert negative == "green, blurry"
    assert sampler == "DPM++ 2M Karras"
    assert values == {"steps": 28, "cfg": 6.5, "width": 512, "height": 768}
    assert seed == "987654"
    assert shot_info.stat().st_size > 10_000 and shot_sent.stat().st_size > 10_000
    assert preset_sampler == "DPM++ 2M Karras" and "Applied preset sd15" in preset_status
    assert preset_values == {"steps": 25, "cfg": 7, "width": 512, "height": 512}
    assert img2img_seed == "987654" and img2img_size == [96, 64]


def test_xyplot_tab_makes_a_grid_and_extensions_tab_lists_the_bundled_ones(app_config):
    with running_app(app_config) as (url, _engine, _demo), browser_page() as page:
        page.goto(url)
        page.get_by_role("tab", name="X/Y plot").click()
        page.fill("#xyplot-prompt textarea", "a red circle on a blue background")
        page.fill("#xyplot-x-values textarea, #xyplot-x-values input", "1, 7")
        page.fill("#xyplot-y-values textarea, #xyplot-y-values input", "1, 2")
        page.click("#xyplot-generate")
        page.wait_for_function("document.querySelector('#xyplot-status').innerText.includes('Done')",
                               timeout=120_000)
        page.wait_for_selector("#xyplot-grid img")
        status = page.inner_text("#xyplot-status")
        size = page.evaluate("(() => { const i = document.querySelector('#xyplot-grid img');"
                             " return [i.naturalWidth, i.naturalHeight]; })()")
        screenshot(page, "xyplot")
        page.get_by_role("tab", name="Extensions").click()
        page.wait_for_selector("#extensions-table tr[data-extension='wildcards']")
        table = page.inner_text("#extensions-table")
        screenshot(page, "extensions-tab")
    assert "Done: 2x2 grid" in status
    assert size[0] > 128 and size[1] > 128, size  # two 64 px cells each way plus the label margins
    assert "wildcards" in table and "xyplot" in table and "enabled" in table
    saved = list((app_config.outputs_dir / "xyplot").rglob("*.png"))
    assert len(saved) == 1
