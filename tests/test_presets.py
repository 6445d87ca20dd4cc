"""Presets: the shipped files load and make valid requests; bad files are refused with clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from ldm_ui.config import PROJECT_ROOT, AppConfig
from ldm_ui.presets import (
    LoraRef, Preset, PresetError, PresetLibrary, add_lora_tags, apply_style, preset_from_settings, startup_model,
)
from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.presets_ui import preset_updates

SHIPPED = PROJECT_ROOT / "presets"
UPDATE_ORDER = ("prompt", "negative_prompt", "sampler", "steps", "cfg_scale", "width", "height", "model",
                "preview_method")


def write(folder: Path, name: str, data) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def applied(updates: list) -> dict:
    """The widget values an apply would set (skipped widgets left out)."""
    skip = gr.skip()
    return {key: value for key, value in zip(UPDATE_ORDER, updates) if value != skip}


def test_every_shipped_preset_loads_and_applies_to_a_valid_request():
    library = PresetLibrary.load(SHIPPED)
    assert library.errors == []
    expected = {"demo-shapes", "sd15", "sdxl", "sdxl-turbo", "sd-turbo", "lcm-lora-sd15", "lcm-lora-sdxl"}
    assert expected <= set(library.names())
    for name in library.names():
        preset = library.get(name)
        values = applied(preset_updates(preset, "a red circle", None, ["demo-shapes"])[0])
        assert values, name
        fields = {k: v for k, v in values.items() if k not in ("model", "preview_method")}
        request = Txt2ImgRequest(**{"prompt": "a red circle", **fields})  # raises if a value is out of range
        assert request.prompt.startswith("a red circle")


def test_shipped_presets_hold_the_documented_settings():
    library = PresetLibrary.load(SHIPPED)
    demo = library.get("demo-shapes")
    assert (demo.model, demo.width, demo.height) == ("demo-shapes", 64, 64)
    sd15 = library.get("sd15")
    assert (sd15.width, sd15.sampler, sd15.steps, sd15.cfg_scale) == (512, "DPM++ 2M Karras", 25, 7)
    assert library.get("sdxl").width == 1024
    for turbo in ("sdxl-turbo", "sd-turbo"):
        assert 1 <= library.get(turbo).steps <= 4 and library.get(turbo).cfg_scale == 0
    lcm = library.get("lcm-lora-sd15")
    assert 4 <= lcm.steps <= 8 and 1 <= lcm.cfg_scale <= 2 and lcm.sampler == "LCM"
    values = applied(preset_updates(lcm, "a cat", None, [])[0])
    assert values["prompt"] == "a cat <lora:lcm-lora-sdv1-5:1>"


def test_applying_a_preset_sets_the_model_only_when_it_is_installed():
    preset = PresetLibrary.load(SHIPPED).get("demo-shapes")
    values, note = preset_updates(preset, "", "tiny-sd", ["tiny-sd", "demo-shapes"])
    assert applied(values)["model"] == "demo-shapes"
    values, note = preset_updates(preset, "", "tiny-sd", ["tiny-sd"])
    assert "model" not in applied(values)
    assert "`demo-shapes` is not in your models folder" in note


@pytest.mark.parametrize("data, words", [
    ({"steps": 20, "sampling_steps": 30}, ["bad.json", "'sampling_steps'", "allowed keys:", "cfg_scale"]),
    ({"steps": "twenty"}, ["bad.json", "'steps'", "whole number between 1 and 150", "'twenty'"]),
    ({"cfg_scale": "7"}, ["bad.json", "'cfg_scale'", "a number between 0 and 30", "'7'"]),
    ({"steps": 500}, ["bad.json", "'steps'", "between 1 and 150", "500"]),
    ({"cfg_scale": 31}, ["bad.json", "'cfg_scale'", "between 0 and 30", "31"]),
    ({"width": 1001}, ["bad.json", "'width'", "multiple of 8 between 64 and 2048", "1001"]),
    ({"sampler": "Euler b"}, ["bad.json", "'sampler'", "DPM++ 2M Karras", "'Euler b'"]),
    ({"loras": [{"name": "x", "weight": 9}]}, ["bad.json", "'loras'", "between -5 and 5"]),
    ({"loras": [{"name": "../evil", "weight": 1}]}, ["bad.json", "'../evil'", "not allowed"]),
    ({"style": "no slot here"}, ["bad.json", "'style'", "{prompt}"]),
    ({"preview_method": "fast"}, ["bad.json", "'preview_method'", "approx, full, off"]),
    ("[1, 2]", ["bad.json", "JSON object"]),
    ('{"steps": 20,', ["bad.json", "not valid JSON", "line 1"]),
])
def test_a_bad_preset_is_refused_with_file_key_and_what_is_allowed(tmp_path, data, words):
    write(tmp_path, "bad", data)
    write(tmp_path, "good", {"steps": 12})
    library = PresetLibrary.load(tmp_path)
    assert library.names() == ["good"], "one bad preset must not stop the others"
    assert len(library.errors) == 1
    for word in words:
        assert word in library.errors[0], (word, library.errors[0])
    with pytest.raises(PresetError, match="unknown preset 'bad'"):
        library.get("bad")


def test_save_then_load_round_trip(tmp_path):
    library = PresetLibrary.load(tmp_path / "presets")
    settings = dict(prompt="a red circle <lora:detail:0.6> <lora:style>", negative_prompt="blurry, text",
                    sampler="DPM++ 2M Karras", steps=25, cfg_scale=6.5, width=512, height=768, model="tiny-sd",
                    preview_method="full")
    path = library.save(preset_from_settings("my look", settings))
    assert path.name == "my look.json"
    again = PresetLibrary.load(tmp_path / "presets").get("my look")
    assert (again.sampler, again.steps, again.cfg_scale, again.width, again.height) == (
        "DPM++ 2M Karras", 25, 6.5, 512, 768)
    assert (again.negative_prompt, again.model, again.preview_method) == ("blurry, text", "tiny-sd", "full")
    assert again.loras == (LoraRef("detail", 0.6), LoraRef("style", 1.0))
    assert json.loads(path.read_text())["steps"] == 25  # readable: plain numbers, not 25.0


def test_save_refuses_bad_names_and_overwrites_only_when_confirmed(tmp_path):
    library = PresetLibrary.load(tmp_path)
    for bad in ("../escape", "sub/dir", "a\\b", "nul\x00byte", "..", ".hidden", ""):
        with pytest.raises(PresetError, match="preset name"):
            library.save(preset_from_settings(bad, {"steps": 5}))
    assert list(tmp_path.iterdir()) == []
    library.save(preset_from_settings("mine", {"steps": 5}))
    with pytest.raises(PresetError, match="already exists.*confirm overwriting"):
        library.save(preset_from_settings("mine", {"steps": 9}))
    assert library.get("mine").steps == 5
    library.save(preset_from_settings("mine", {"steps": 9}), overwrite=True)
    assert PresetLibrary.load(tmp_path).get("mine").steps == 9


def test_style_and_lora_tags_are_applied_once():
    assert apply_style("{prompt}, oil painting", "a cat") == "a cat, oil painting"
    assert apply_style("{prompt}, oil painting", "a cat, oil painting") == "a cat, oil painting"
    assert apply_style("photo of {prompt}, 35mm", "") == ""  # nothing to wrap: the UI asks for a prompt
    styled = Preset(name="s", style="photo of {prompt}, 35mm")
    values, note = preset_updates(styled, "", None, [])
    assert applied(values) == {} and "type one and pick the preset again" in note
    assert applied(preset_updates(styled, "a dog", None, [])[0]) == {"prompt": "photo of a dog, 35mm"}
    tagged = add_lora_tags("a cat", [LoraRef("detail", 0.5)])
    assert tagged == "a cat <lora:detail:0.5>"
    assert add_lora_tags(tagged, [LoraRef("detail", 0.8)]) == "a cat <lora:detail:0.8>"


def test_unknown_preset_at_launch_names_the_choices(tmp_path):
    class Models:
        def model_names(self):
            return ["tiny-sd", "demo-shapes"]

    config = AppConfig(presets_dir=SHIPPED, preset="nope", default_model="tiny-sd")
    with pytest.raises(PresetError, match="unknown preset 'nope'.*sd15"):
        startup_model(config, Models())
    config.preset = "demo-shapes"
    assert startup_model(config, Models()) == "demo-shapes"
    config.preset = "sdxl-turbo"  # names a hub model that is not installed: keep --model
    assert startup_model(config, Models()) == "tiny-sd"


def test_launch_preset_sets_starting_widgets_and_bad_files_are_reported_in_the_tab(app_config, tmp_path, caplog):
    import app

    folder = tmp_path / "presets"
    write(folder, "fast", {"sampler": "DDIM", "steps": 7, "cfg_scale": 3.5, "width": 128, "height": 96,
                           "negative_prompt": "blurry", "preview_method": "off"})
    write(folder, "broken", {"steps": 0})
    app_config.presets_dir, app_config.preset = folder, "fast"
    engine, demo = app.create_app(app_config)
    try:
        ui = demo.ldm_ui
        controls, _ = ui.tabs["txt2img"]
        assert (controls.sampler.value, controls.steps.value, controls.cfg_scale.value) == ("DDIM", 7, 3.5)
        assert (controls.width.value, controls.height.value) == (128, 96)
        assert controls.negative_prompt.value == "blurry" and ui.preview_method.value == "off"
        statuses = [b.value for b in demo.blocks.values() if getattr(b, "elem_id", None) == "txt2img-preset-status"]
        assert statuses and "broken.json" in statuses[0] and "'steps'" in statuses[0]
        assert "broken.json" in caplog.text
    finally:
        engine.shutdown()


def test_switching_presets_replaces_the_previous_presets_lora_tags_and_style():
    lcm = Preset(name="lcm", loras=(LoraRef("lcm-lora-sdv1-5", 1.0),))
    styled = Preset(name="ink", style="ink drawing of {prompt}, high contrast", loras=(LoraRef("ink", 0.7),))
    plain = Preset(name="plain", steps=25)
    first = applied(preset_updates(lcm, "a cat <lora:mine:0.5>", None, [])[0])["prompt"]
    assert first == "a cat <lora:mine:0.5> <lora:lcm-lora-sdv1-5:1>"
    second = applied(preset_updates(styled, first, None, [], previous=lcm)[0])["prompt"]
    assert second == "ink drawing of a cat <lora:mine:0.5>, high contrast <lora:ink:0.7>"
    third = applied(preset_updates(plain, second, None, [], previous=styled)[0])
    assert third["prompt"] == "a cat <lora:mine:0.5>", "the user's own LoRA stays, the presets' go"
    assert "prompt" not in applied(preset_updates(plain, "a cat", None, [], previous=plain)[0])
