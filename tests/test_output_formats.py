"""Saving images as PNG, JPEG or WebP with the infotext inside, the filename pattern, the .txt beside, and the
remembered settings that choose them (issue 19, remembered settings)."""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import piexif
import piexif.helper
import pytest
from PIL import Image

from ldm_ui import user_settings
from ldm_ui.backends.outputs import save_planned
from ldm_ui.history import History
from ldm_ui.image_saving import save_image
from ldm_ui.metadata import read_infotext
from ldm_ui.requests import Output, Txt2ImgRequest
from ldm_ui.save_options import (
    ALLOWED_TAGS, PatternValues, SaveOptionError, SaveOptions, check_pattern, expand_pattern,
)
from ldm_ui.ui.pnginfo import read_parameters

INFOTEXT = ('a red (circle:1.2), "quoted", café 日本\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, '
            'CFG scale: 6.5, Seed: 1234, Size: 64x48, Model hash: 0123abcd, Model: demo-shapes, Clip skip: 2')
NOW = dt.datetime(2026, 12, 1, 19, 5, 9)


def picture(mode: str = "RGB") -> Image.Image:
    image = Image.new(mode, (64, 48), (200, 30, 30, 255)[:len(mode)] if mode != "L" else 120)
    return image


def a1111_reads(path) -> str:
    """What AUTOMATIC1111's PNG info reads from a file (modules/images.py: the PNG chunk, else piexif's EXIF)."""
    with Image.open(path) as image:
        image.load()
        if "parameters" in image.info:
            return image.info["parameters"]
        comment = piexif.load(image.info["exif"])["Exif"][piexif.ExifIFD.UserComment]
        return piexif.helper.UserComment.load(comment)


@pytest.mark.parametrize("file_format, pil_format", [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_each_format_keeps_the_infotext_for_us_and_for_automatic1111(tmp_path, file_format, pil_format):
    path = save_image(picture(), tmp_path, "1234", INFOTEXT, SaveOptions(format=file_format, quality=90))
    assert path.name == f"00000-1234.{file_format}"
    with Image.open(path) as image:
        image.load()
        assert image.format == pil_format and image.size == (64, 48)
        assert read_infotext(image) == INFOTEXT  # what History, Extras and the API's /png-info read
    assert read_parameters(str(path)) == (INFOTEXT, "")  # the PNG info tab
    assert a1111_reads(path) == INFOTEXT


def test_jpeg_flattens_transparency_onto_white_and_webp_keeps_it(tmp_path):
    image = Image.new("RGBA", (32, 32), (0, 0, 255, 0))
    image.paste((255, 0, 0, 255), (0, 0, 16, 32))  # left half opaque red, right half fully transparent
    jpeg = Image.open(save_image(image, tmp_path, "1", INFOTEXT, SaveOptions(format="jpg", quality=95)))
    webp = Image.open(save_image(image, tmp_path, "1", INFOTEXT, SaveOptions(format="webp", quality=95)))
    assert jpeg.mode == "RGB" and all(abs(a - b) <= 8 for a, b in zip(jpeg.getpixel((28, 16)), (255, 255, 255)))
    assert all(abs(a - b) <= 8 for a, b in zip(jpeg.getpixel((4, 16)), (255, 0, 0)))
    assert webp.mode == "RGBA" and webp.getpixel((28, 16))[3] == 0 and webp.getpixel((4, 16))[3] == 255


def test_quality_changes_the_jpeg_and_webp_files(tmp_path):
    noisy = Image.effect_noise((128, 128), 80).convert("RGB")
    for file_format in ("jpg", "webp"):
        low = save_image(noisy, tmp_path, "q", INFOTEXT, SaveOptions(format=file_format, quality=10))
        high = save_image(noisy, tmp_path, "q", INFOTEXT, SaveOptions(format=file_format, quality=95))
        assert low.stat().st_size * 2 < high.stat().st_size


def test_an_infotext_too_long_for_jpeg_exif_is_saved_as_png_whole(tmp_path):
    long_text = "x" * 40_000 + "\nSteps: 20, Sampler: Euler, Seed: 1, Size: 64x48"
    path = save_image(picture(), tmp_path, "1", long_text, SaveOptions(format="jpg"))
    assert path.suffix == ".png" and read_infotext(Image.open(path)) == long_text


def test_the_pattern_fills_every_tag_from_the_infotext():
    from ldm_ui.metadata import parse_infotext

    info = parse_infotext(INFOTEXT)
    values = PatternValues(info.prompt, info.settings, NOW)
    pattern = "[seed]_[prompt_words]_[model_name]_[sampler]_[steps]_[cfg]_[width]x[height]_[datetime]_[date]_[model_hash]"
    assert expand_pattern(pattern, values) == ("1234_a red circle 1 2 quoted café 日本_demo-shapes_DPM++ 2M Karras_20_"
                                               "6.5_64x48_20261201190509_2026-12-01_0123abcd")
    assert expand_pattern("[SEED]-[ Steps ]", values) == "1234-20"  # tags ignore case and spaces, as in A1111


def test_an_unknown_tag_is_refused_with_the_allowed_list():
    with pytest.raises(SaveOptionError) as refused:
        check_pattern("[seed]-[job_timestamp]")
    assert str(refused.value) == (f"filename pattern '[seed]-[job_timestamp]': unknown tag [job_timestamp]; "
                                  f"allowed tags: {ALLOWED_TAGS}")
    assert "[prompt_words]" in ALLOWED_TAGS and "[datetime]" in ALLOWED_TAGS
    with pytest.raises(SaveOptionError, match="unknown tag"):
        SaveOptions(filename_pattern="[nope]")
    with pytest.raises(SaveOptionError, match=r"output format must be one of png, jpg, webp, got 'gif'"):
        SaveOptions(format="gif")
    with pytest.raises(SaveOptionError, match="quality must be a whole number from 1 to 100, got 0"):
        SaveOptions(quality=0)


def test_a_pattern_cannot_leave_the_folder_and_names_stay_short(tmp_path):
    folder = tmp_path / "outputs" / "txt2img"
    sneaky = 'a/../../b\\c:d*e?f"g<h>i|j\nk' + " word" * 200 + "\nSteps: 2, Sampler: Euler, Seed: 5, Size: 64x64"
    paths = [save_image(picture(), folder, "5", sneaky, SaveOptions(filename_pattern=pattern))
             for pattern in ("../../[prompt]", "/etc/[seed]", "..", "[prompt_words]/..\\x", "[model_name]")]
    for path in paths:
        assert path.parent == folder and path.is_file()
        assert len(path.name.encode()) <= 200 and "/" not in path.name and "\\" not in path.name
    assert [p.name for p in paths[1:]] == ["00001-_etc_5.png", "00002-5.png", "00003-a b c d e f g h_.._x.png",
                                           "00004-5.png"]  # '..' alone and a missing Model keep the seed
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == sorted(p.name for p in paths)


def test_the_infotext_goes_into_a_txt_beside_and_nothing_is_overwritten(tmp_path):
    (tmp_path / "00000-1234.txt").write_text("someone else's notes")
    (tmp_path / "00001-1234.jpg").write_bytes(b"another image")
    path = save_image(picture(), tmp_path, "1234", INFOTEXT, SaveOptions(format="webp", save_txt=True))
    assert path.name == "00002-1234.webp"  # the running number counts every format and the .txt files
    assert path.with_suffix(".txt").read_text(encoding="utf-8") == INFOTEXT
    assert (tmp_path / "00000-1234.txt").read_text() == "someone else's notes"
    without = save_image(picture(), tmp_path, "1234", INFOTEXT, SaveOptions())
    assert not without.with_suffix(".txt").exists()


def test_threads_saving_jpegs_with_txt_never_share_a_name(tmp_path):
    options = SaveOptions(format="jpg", quality=95, filename_pattern="[sampler]", save_txt=True)

    def save(index):
        return save_image(picture(), tmp_path, "42", f"a circle\nSteps: 2, Sampler: Euler, Seed: {index}", options)

    with ThreadPoolExecutor(16) as pool:
        paths = list(pool.map(save, range(48)))
    assert len(set(paths)) == 48 and len(list(tmp_path.iterdir())) == 96  # every image, every .txt, no temp file
    for index, path in enumerate(paths):
        assert f"Seed: {index}" in path.with_suffix(".txt").read_text() == read_infotext(Image.open(path))


def test_a_ray_front_saves_a_replicas_image_in_its_own_format(tmp_path):
    output = Output(image=picture(), seed=1234, infotext=INFOTEXT, path="txt2img/2026-12-01/1234")
    saved = save_planned(output, tmp_path, SaveOptions(format="webp", filename_pattern="[seed]-[steps]"))
    assert saved.path == str(tmp_path / "txt2img" / "2026-12-01" / "00000-1234-20.webp")


def test_history_lists_jpeg_and_webp_and_moves_the_txt_with_the_image(tmp_path):
    folder = tmp_path / "txt2img" / "2026-12-01"
    jpeg = save_image(picture(), folder, "1", INFOTEXT, SaveOptions(format="jpg", save_txt=True))
    webp = save_image(picture(), folder, "2", "a blue square\nSteps: 2, Sampler: Euler, Seed: 2", SaveOptions(format="webp"))
    history = History(tmp_path)
    assert sorted(p.name for p in history.page().paths) == sorted([jpeg.name, webp.name])
    assert history.page(search="CAFÉ").paths == [jpeg]  # the prompt is read from the EXIF
    trashed = history.delete(jpeg)
    assert trashed.with_suffix(".txt").read_text(encoding="utf-8") == INFOTEXT and not jpeg.with_suffix(".txt").exists()
    history.restore(trashed)
    assert jpeg.with_suffix(".txt").is_file()


# ---- remembered settings: the engine saves as they say


def test_saved_settings_choose_how_the_engine_writes_images(engine, app_config):
    user_settings.update(app_config, samples_format="jpeg", jpeg_quality=70, filename_pattern="[seed]-[prompt_words]",
                         save_txt=True, clip_skip=2)
    finished = engine.generate(Txt2ImgRequest(prompt="a red circle", steps=2, seed=77, width=64, height=64),
                               timeout=120)
    path = finished.outputs[0].path
    assert path.endswith("-77-a red circle.jpg")
    assert read_infotext(Image.open(path)) == finished.outputs[0].infotext
    assert "Clip skip: 2" in finished.outputs[0].infotext  # the default clip skip of a request naming none
    assert open(path[:-4] + ".txt", encoding="utf-8").read() == finished.outputs[0].infotext
    saved = json.loads(user_settings.settings_path(app_config).read_text())
    assert saved["samples_format"] == "jpg" and saved["filename_pattern"] == "[seed]-[prompt_words]"


def test_a_restart_applies_the_saved_settings(app_config, tmp_path):
    from ldm_ui.config import AppConfig

    user_settings.update(app_config, samples_format="webp", jpeg_quality=55, save_txt=True, clip_skip=3)
    fresh = AppConfig(models_dir=app_config.models_dir, outputs_dir=app_config.outputs_dir,
                      cache_dir=app_config.cache_dir)
    settings, notes = user_settings.load_and_apply(fresh)
    assert notes == [] and settings.samples_format == "webp"
    assert fresh.save_options == SaveOptions(format="webp", quality=55, save_txt=True) and fresh.clip_skip == 3


def test_bad_saving_values_in_the_file_are_named_and_the_rest_applies(app_config):
    path = user_settings.settings_path(app_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"samples_format": "gif", "jpeg_quality": 0, "filename_pattern": "[seed]-[owner]",
                                "save_txt": "yes", "clip_skip": 13, "steps": 30}))
    settings, notes = user_settings.load(app_config)
    assert settings.steps == 30 and settings.save_options() == SaveOptions() and settings.clip_skip == 1
    assert notes == [
        "settings.json: output format must be one of png, jpg, webp, got 'gif'; left at its default",
        "settings.json: JPEG/WebP quality must be a whole number from 1 to 100, got 0; left at its default",
        f"settings.json: filename pattern '[seed]-[owner]': unknown tag [owner]; allowed tags: {ALLOWED_TAGS}; "
        "left at its default",
        "settings.json: save infotext as .txt must be true or false, got 'yes'; left at its default",
        "settings.json: clip skip must be a whole number from 1 to 12, got 13; left at its default"]
    with pytest.raises(ValueError, match=r"unknown tag \[owner\]"):
        user_settings.update(app_config, filename_pattern="[owner]")
    assert json.loads(path.read_text())["filename_pattern"] == "[seed]-[owner]"  # a refused change writes nothing


def test_extras_keeps_the_infotext_of_a_jpeg_or_webp_it_upscales(tmp_path):
    from ldm_ui.engine.tasks.upscale import extras_infotext, folder_images
    from ldm_ui.requests import UpscaleRequest

    folder = tmp_path / "txt2img" / "2026-12-01"
    for file_format in ("jpg", "webp"):
        save_image(picture(), folder, "1234", INFOTEXT, SaveOptions(format=file_format))
    sources = folder_images(tmp_path, "txt2img/2026-12-01")
    assert len(sources) == 2
    for source in sources:
        text, seed = extras_infotext(source, UpscaleRequest(images=(source,), scale=2), (128, 96))
        assert seed == 1234 and text.startswith('a red (circle:1.2), "quoted", café 日本\nNegative prompt: blurry')
        assert "Postprocess upscale by: 2" in text and "Model: demo-shapes" in text
