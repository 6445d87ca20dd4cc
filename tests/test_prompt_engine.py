"""The prompt language through the engine, in every task that takes a prompt, with what the infotext records."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ldm_ui.config import AppConfig, ConfigError, config_from_args
from ldm_ui.demo.judge import judge
from ldm_ui.metadata import generation_fields, parse_infotext
from ldm_ui.requests import (
    Img2ImgRequest, InpaintRequest, InterpolateRequest, RequestError, Txt2ImgRequest,
)

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(steps=4, seed=3, sampler="Euler", preview_method="off")


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    """The built-in model with the shipped models folder (and so the shipped demo embedding)."""
    from ldm_ui.engine.engine import Engine

    work = tmp_path_factory.mktemp("demo-engine")
    engine = Engine(AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache",
                              default_model="demo-shapes")).start()
    yield engine
    engine.shutdown()


@pytest.fixture(scope="module")
def tiny_engine(models_dir, tmp_path_factory):
    """tiny-sd with an --embeddings-dir holding one embedding for its 32-wide text encoder."""
    import torch
    from safetensors.torch import save_file

    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("tiny-engine")
    shutil.copytree(models_dir / "diffusers", root / "models" / "diffusers")
    extra = root / "my-embeddings"
    extra.mkdir()
    torch.manual_seed(0)
    save_file({"emb_params": torch.randn(2, 32) * 3}, str(extra / "zz.safetensors"))
    config = AppConfig(models_dir=root / "models", outputs_dir=root / "outputs", cache_dir=root / "cache",
                       default_model="tiny-sd", embeddings_dirs=[extra])
    engine = Engine(config).start()
    yield engine
    engine.shutdown()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def one(engine, request):
    finished = engine.generate(request, timeout=300)
    assert len(finished.outputs) >= 1
    return finished.outputs[0]


def test_weight_one_and_edit_at_zero_give_the_plain_images(demo_engine):
    plain = one(demo_engine, Txt2ImgRequest(prompt="a red circle on a blue background", **FAST))
    weighted = one(demo_engine, Txt2ImgRequest(prompt="a (red:1.0) circle on a blue background", **FAST))
    assert np.array_equal(pixels(plain.image), pixels(weighted.image))
    edited = one(demo_engine, Txt2ImgRequest(prompt="a [green:red:0] circle on a blue background", **FAST))
    assert np.array_equal(pixels(plain.image), pixels(edited.image))
    assert "Clip skip" not in plain.infotext and "TI hashes" not in plain.infotext


def test_words_past_the_first_chunk_change_the_image(demo_engine):
    """The built-in model reads 14 tokens a chunk: today's truncation would drop the last word."""
    base = "a red circle on a blue background " * 2 + "on a"
    yellow = one(demo_engine, Txt2ImgRequest(prompt=base + " yellow background", **FAST))
    green = one(demo_engine, Txt2ImgRequest(prompt=base + " green background", **FAST))
    assert not np.array_equal(pixels(yellow.image), pixels(green.image))
    long = one(demo_engine, Txt2ImgRequest(prompt="(a red circle:1.1), BREAK [blue|green] " * 100,
                                           negative_prompt="ugly " * 300, **FAST))
    assert long.image.size == (64, 64)


def test_embedding_draws_its_shape_and_is_recorded(demo_engine):
    output = one(demo_engine, Txt2ImgRequest(prompt="a demo-redcircle on a blue background", seed=1, steps=20,
                                             sampler="Euler a", preview_method="off"))
    verdict = judge(output.image)
    assert (verdict.color, verdict.shape, verdict.background) == ("red", "circle", "blue")
    hashes = parse_infotext(output.infotext).settings["TI hashes"]
    assert hashes.startswith("demo-redcircle: ") and len(hashes.split(": ")[1]) == 12


def test_clip_skip_changes_the_image_and_round_trips(demo_engine):
    prompt = "a red circle on a blue background"
    plain = one(demo_engine, Txt2ImgRequest(prompt=prompt, **FAST))
    skipped = one(demo_engine, Txt2ImgRequest(prompt=prompt, clip_skip=2, **FAST))
    assert not np.array_equal(pixels(plain.image), pixels(skipped.image))
    fields, notes = generation_fields(parse_infotext(skipped.infotext))
    assert fields["clip_skip"] == 2 and notes == []
    again = one(demo_engine, Txt2ImgRequest(**{**fields, **FAST, "model": None}))
    assert np.array_equal(pixels(again.image), pixels(skipped.image))
    # the demo model's text encoder has 3 layers: 4 is refused with the allowed range named, the engine serves on
    from ldm_ui.engine.engine import JobFailed

    with pytest.raises(JobFailed, match=r"clip skip must be a whole number from 1 to 3 .*got 4"):
        demo_engine.generate(Txt2ImgRequest(prompt=prompt, clip_skip=4, **FAST), timeout=120)
    with pytest.raises(RequestError, match=r"clip skip must be between 1 and 12, got 13"):
        Txt2ImgRequest(prompt=prompt, clip_skip=13)


def test_app_clip_skip_setting_is_the_default(tiny_engine):
    request = Txt2ImgRequest(prompt="a red cat", **FAST)
    tiny_engine.config.clip_skip = 2
    try:
        output = one(tiny_engine, request)
    finally:
        tiny_engine.config.clip_skip = 1
    assert parse_infotext(output.infotext).settings["Clip skip"] == "2"
    assert "Clip skip" not in one(tiny_engine, request).infotext


def scene(size=(64, 64)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    return image


def mask() -> Image.Image:
    image = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(image).rectangle((8, 8, 40, 40), fill=255)
    return image


TASKS = {
    "img2img": lambda prompt, **kw: Img2ImgRequest(prompt=prompt, init_image=scene(), strength=0.8, **FAST, **kw),
    "inpaint": lambda prompt, **kw: InpaintRequest(prompt=prompt, init_image=scene(), mask=mask(), strength=0.9,
                                                   **FAST, **kw),
    "interpolate": lambda prompt, **kw: InterpolateRequest(mode="prompts", prompt=prompt, prompt_b=prompt + " x",
                                                           frames=2, **FAST, **kw),
}


@pytest.mark.parametrize("task", list(TASKS))
def test_every_task_reads_the_prompt_language(tiny_engine, task):
    make = TASKS[task]
    plain = one(tiny_engine, make("a red cat", negative_prompt="blurry"))
    same = one(tiny_engine, make("a (red:1.0) cat", negative_prompt="(blurry:1.0)"))
    assert np.array_equal(pixels(plain.image), pixels(same.image))
    weighted = one(tiny_engine, make("a (red:1.8) cat", negative_prompt="blurry"))
    assert not np.array_equal(pixels(plain.image), pixels(weighted.image))
    negative = one(tiny_engine, make("a red cat", negative_prompt="(blurry:1.8)"))
    assert not np.array_equal(pixels(plain.image), pixels(negative.image))
    # img2img runs the last 3 of 4 steps; the schedule counts the request's steps and the steps run from 0, as
    # AUTOMATIC1111 does, so a switch after step 1 is seen at the third step run
    edited = one(tiny_engine, make("a [red:blue:1] cat", negative_prompt="blurry"))
    assert not np.array_equal(pixels(plain.image), pixels(edited.image))
    embedded = one(tiny_engine, make("a red cat zz", negative_prompt="blurry", clip_skip=2))
    settings = parse_infotext(embedded.infotext).settings
    assert settings["TI hashes"].startswith("zz: ") and settings["Clip skip"] == "2"


def test_txt2img_embedding_from_embeddings_dir_in_the_negative_prompt(tiny_engine):
    plain = one(tiny_engine, Txt2ImgRequest(prompt="a red cat", negative_prompt="zz", **FAST))
    assert "zz: " in parse_infotext(plain.infotext).settings["TI hashes"]


def test_interpolation_mixes_prompts_of_different_lengths(tiny_engine):
    finished = tiny_engine.generate(InterpolateRequest(mode="prompts", prompt="a cat", prompt_b="b" * 200, frames=3,
                                                       **FAST), timeout=300)
    assert len(finished.outputs) == 3


def test_a_prompt_over_the_limit_is_refused_with_the_limit_named():
    with pytest.raises(RequestError, match=r"prompt is 10,000 characters long; the limit is 4,000"):
        Txt2ImgRequest(prompt="a" * 10_000)


def test_flags():
    config = config_from_args(["--embeddings-dir", "/tmp/a", "--embeddings-dir", "/tmp/b", "--clip-skip", "2"])
    assert config.embeddings_dirs == [Path("/tmp/a"), Path("/tmp/b")] and config.clip_skip == 2
    assert config.embedding_dirs()[0] == config.models_dir / "embeddings"
    with pytest.raises(ConfigError, match="--clip-skip must be between 1 and 12, got 0"):
        config_from_args(["--clip-skip", "0"])


def test_a_repeated_prompt_is_encoded_once_and_gives_the_same_image(engine):
    """Generate pressed again (or a batch count) with the same prompt runs the text encoder once; what the text
    encoder's output depends on (the text, clip skip, steps of a schedule) changes the key."""
    first = engine.generate(Txt2ImgRequest(prompt="a red circle", steps=3, seed=5, sampler="Euler"), timeout=120)
    calls = []
    hook = engine.models.current.pipe.text_encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        again = engine.generate(Txt2ImgRequest(prompt="a red circle", steps=3, seed=5, sampler="Euler"), timeout=120)
        assert calls == [], "the same prompt was encoded again"
        assert np.array_equal(np.asarray(first.outputs[0].image), np.asarray(again.outputs[0].image))
        engine.generate(Txt2ImgRequest(prompt="a red circle", steps=3, seed=5, sampler="Euler", batch_count=3),
                        timeout=120)
        assert calls == []
        for changed in (dict(prompt="a blue circle"), dict(clip_skip=2), dict(negative_prompt="green")):
            calls.clear()
            engine.generate(Txt2ImgRequest(**{**dict(prompt="a red circle", steps=3, seed=5, sampler="Euler"),
                                              **changed}), timeout=120)
            assert calls, f"{changed} must encode anew"
    finally:
        hook.remove()
