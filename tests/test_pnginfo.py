"""PNG info: our infotext survives a PNG round trip; AUTOMATIC1111's strings parse; "Send to" fills widgets."""

from __future__ import annotations

import gradio as gr
import pytest
from PIL import Image, PngImagePlugin

from ldm_ui.metadata import build_infotext, generation_fields, parse_infotext, read_png_parameters
from ldm_ui.requests import HiresFix, Txt2ImgRequest
from ldm_ui.ui.pnginfo import NO_METADATA, read_parameters, render_parameters, send_updates

A1111 = (
    "masterpiece, best quality, 1girl, <lora:add_detail:0.8>, (red hair:1.2)\n"
    'standing in a field, "quoted words"\n'
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4)\n"
    "easynegative\n"
    "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Hires upscale: 2, "
    "Hires steps: 15, Hires upscaler: 4x-UltraSharp, "
    'Lora hashes: "add_detail: 7c6bad76eb54, more_art: 0123abcd", TI hashes: "easynegative: c74b4e810b03", '
    'ADetailer prompt: "a face, smiling\\nsecond line", Version: v1.10.1'
)


def png_with(tmp_path, text: str | None, name: str = "in.png") -> str:
    info = PngImagePlugin.PngInfo()
    if text is not None:
        info.add_text("parameters", text)
    path = tmp_path / name
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path, pnginfo=info)
    return str(path)


def test_a1111_infotext_with_hires_lora_hashes_quotes_and_multiline_prompts():
    info = parse_infotext(A1111)
    assert info.prompt == ("masterpiece, best quality, 1girl, <lora:add_detail:0.8>, (red hair:1.2)\n"
                           'standing in a field, "quoted words"')
    assert info.negative_prompt == "lowres, bad anatomy, (worst quality:1.4)\neasynegative"
    assert info.settings["Lora hashes"] == "add_detail: 7c6bad76eb54, more_art: 0123abcd"
    assert info.settings["TI hashes"] == "easynegative: c74b4e810b03"
    assert info.settings["ADetailer prompt"] == "a face, smiling\nsecond line"
    assert (info.settings["Hires upscale"], info.settings["Hires steps"], info.settings["Hires upscaler"]) == (
        "2", "15", "4x-UltraSharp")
    assert info.settings["Version"] == "v1.10.1" and info.settings["Denoising strength"] == "0.45"
    fields, notes = generation_fields(info)
    assert fields == {"prompt": info.prompt, "negative_prompt": info.negative_prompt, "sampler": "DPM++ 2M Karras",
                      "steps": 28, "cfg_scale": 6.5, "seed": 1234567890, "width": 512, "height": 768,
                      "model": "v1-5-pruned-emaonly", "clip_skip": 1,  # absent means 1, as AUTOMATIC1111 reads it
                      "hires": HiresFix(upscaler="4x-UltraSharp", scale=2, steps=15, denoising_strength=0.45)}
    assert notes == []
    fields, notes = generation_fields(parse_infotext(A1111.replace("Steps: 28,", "Steps: 28, Clip skip: 2,")))
    assert fields["clip_skip"] == 2 and notes == []
    fields, notes = generation_fields(parse_infotext(A1111.replace("Steps: 28,", "Steps: 28, Clip skip: 40,")))
    assert "clip_skip" not in fields and notes == ["Clip skip '40' is not a whole number from 1 to 12; left unchanged"]


@pytest.mark.parametrize("text, prompt, negative, settings", [
    ("a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64", "a cat", "",
     {"Steps": "20", "Seed": "1"}),  # no negative prompt
    ("a cat\r\nNegative prompt: dog\r\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64",
     "a cat", "dog", {"Sampler": "Euler a"}),  # Windows line endings
    ("just a prompt, nothing else", "just a prompt, nothing else", "", {}),
    ("Steps: 5, Sampler: DDIM, CFG scale: 3, Seed: 9, Size: 64x64, Wild key (v2): x/y", "", "",
     {"Wild key (v2)": "x/y"}),  # an empty prompt and an unknown key
])
def test_parser_edge_cases(text, prompt, negative, settings):
    info = parse_infotext(text)
    assert (info.prompt, info.negative_prompt) == (prompt, negative)
    for key, value in settings.items():
        assert info.settings[key] == value


def test_every_setting_we_write_survives_a_png_round_trip(engine, tmp_path):
    request = Txt2ImgRequest(
        prompt='a red circle, "big"\non a blue background: at night', negative_prompt="green,\nblurry",
        sampler="DPM++ 2M Karras", steps=3, cfg_scale=6.5, seed=4242, width=64, height=72, preview_method="off",
        extra_infotext={"Style": 'noir, "film": 35mm', "Note": "two\nlines"},
    )
    output = engine.generate(request, timeout=120).outputs[0]
    with Image.open(output.path) as image:
        text = read_png_parameters(image)
    assert text == output.infotext
    info = parse_infotext(text)
    fields, notes = generation_fields(info)
    assert notes == []
    for name in ("prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "seed", "width", "height"):
        assert fields[name] == getattr(request, name), name
    assert fields["model"] == "tiny-sd"
    assert info.settings["Style"] == 'noir, "film": 35mm' and info.settings["Note"] == "two\nlines"
    assert len(info.settings["Model hash"]) >= 8
    # every key on the settings line came back, and rebuilding gives the same text
    assert build_infotext(info.prompt, info.negative_prompt, info.settings) == text


def test_png_info_reads_ours_a1111s_and_says_when_there_is_nothing(tmp_path):
    text, message = read_parameters(png_with(tmp_path, A1111))
    assert text == A1111 and message == ""
    html = render_parameters(text)
    for shown in ("Lora hashes", "7c6bad76eb54", "Hires upscaler", "4x-UltraSharp", "Version", "easynegative",
                  "&lt;lora:add_detail:0.8&gt;", "Also recorded"):
        assert shown in html, shown
    assert "(kept)" not in html
    assert read_parameters(png_with(tmp_path, None, "plain.png")) == (None, NO_METADATA)
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (16, 16)).save(jpeg)
    assert read_parameters(str(jpeg)) == (None, NO_METADATA)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert read_parameters(str(junk))[1].startswith("⚠️ Could not read this file as an image")


def test_send_fills_prompt_with_lora_tags_negative_sampler_steps_cfg_size_seed_and_clip_skip():
    updates, note = send_updates(A1111, "old prompt")
    prompt, negative, sampler, steps, cfg, width, height, seed, clip_skip = updates
    assert "<lora:add_detail:0.8>" in prompt and prompt.endswith('"quoted words"')
    assert negative.endswith("easynegative")
    assert (sampler, steps, cfg, width, height, seed) == ("DPM++ 2M Karras", 28, 6.5, 512, 768, 1234567890)
    assert clip_skip == 1 and note == ""
    assert send_updates(A1111.replace("Steps: 28,", "Steps: 28, Clip skip: 2,"), "")[0][8] == 2
    odd = "x\nSteps: 20, Sampler: Restart, CFG scale: 7, Seed: 1, Size: 4000x100"
    updates, note = send_updates(odd, "")
    skip = gr.skip()
    assert updates[2] == skip and updates[5] == skip and updates[6] == skip and updates[3] == 20
    assert "sampler 'Restart' has no equivalent" in note and "width 4000 is outside 64-2048" in note


@pytest.mark.parametrize("suffix, byte_order", [(".jpg", "utf-16-be"), (".webp", "utf-16-be"), (".jpg", "utf-16-le")])
def test_a1111_jpeg_and_webp_parameters_in_exif_are_read(tmp_path, suffix, byte_order):
    image = Image.new("RGB", (32, 32), (10, 200, 10))
    exif = image.getexif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode(byte_order)  # EXIF UserComment, as A1111 writes
    path = tmp_path / f"a1111{suffix}"
    image.save(path, exif=exif)
    text, message = read_parameters(str(path))
    assert text == A1111 and message == ""
    assert send_updates(text, "")[0][3] == 28


def test_a_value_without_a_key_does_not_end_the_settings():
    """civitai writes some values without a key; every key after one must still be read."""
    text = ('a cat\nSteps: 20, Sampler: Euler a, "add_detail: 7c6bad76eb54, more: 01", CFG scale: 6, loose, '
            'Seed: 5, Size: 64x64, Model: m')
    info = parse_infotext(text)
    assert info.settings["CFG scale"] == "6" and info.settings["Seed"] == "5" and info.settings["Model"] == "m"
    assert info.prompt == "a cat"


def test_lines_after_the_settings_line_stay_out_of_the_negative_prompt():
    text = ("a red cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64\n"
            "Template: a {red|blue} cat\nNegative Template: blurry")
    info = parse_infotext(text)
    assert (info.prompt, info.negative_prompt) == ("a red cat", "blurry")
    assert info.settings["Seed"] == "1" and info.settings["Template"] == "a {red|blue} cat"
    assert info.settings["Negative Template"] == "blurry"


def test_a_64_bit_seed_is_converted_with_a_note():
    seed = 2**32 + 7
    fields, notes = generation_fields(parse_infotext(f"x\nSteps: 20, Sampler: Euler a, Seed: {seed}, Size: 64x64"))
    assert fields["seed"] == 7
    assert notes == [f"Seed {seed} is outside 0-4294967295 (a 64-bit seed from another tool); using 7 (the seed "
                     "modulo 2^32), so the image will differ"]
    updates, note = send_updates(f"x\nSteps: 20, Sampler: Euler a, Seed: {seed}, Size: 64x64", "")
    assert updates[7] == 7 and "64-bit seed" in note
    Txt2ImgRequest(prompt="x", seed=updates[7])  # the converted seed makes a valid request
