"""A catalogue of bad inputs across tabs and flags: each gets a clear message naming the value and what is
allowed, and the very next job (or launch) still works.

Requests go through `stream_job`, the code every tab's Generate handler runs, so the assertion is on the status
line the user reads; the next job runs on the same engine and must save its image.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Callable

import pytest
from PIL import Image

from ldm_ui.config import AppConfig, ConfigError, config_from_args
from ldm_ui.images import load_image
from ldm_ui.requests import Img2ImgRequest, InpaintRequest, Txt2ImgRequest
from ldm_ui.ui.common import Session, generation_settings, stream_job

TINY = "tiny-sd"
GOOD = dict(prompt="a red circle on a blue background", model=TINY, steps=2, seed=1, width=64, height=64)


def txt2img(**changes) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{**GOOD, **changes})


def widgets(**changes) -> Txt2ImgRequest:
    """As the tab builds it: raw widget values through `generation_settings`."""
    values = dict(prompt=GOOD["prompt"], negative_prompt="", sampler="Euler a", steps=2, cfg_scale=7, width=64,
                  height=64, seed=1, batch_count=1, batch_size=1)
    values.update(changes)
    return Txt2ImgRequest(model=TINY, **generation_settings(**values))


def picture(color=(200, 30, 30), size=(64, 64)) -> Image.Image:
    return Image.new("RGB", size, color)


def img2img(image=None, **changes) -> Img2ImgRequest:
    return Img2ImgRequest(**{**GOOD, "init_image": image if image is not None else picture(), "strength": 0.5,
                             **changes})


@dataclass
class Case:
    name: str
    make: Callable[[], object]
    words: tuple[str, ...]  # what the user must read in the error


CASES = [
    Case("width 1001", lambda: txt2img(width=1001), ("width must be a multiple of 8 between 64 and 2048", "1001")),
    Case("height 32", lambda: txt2img(height=32), ("height", "between 64 and 2048", "32")),
    Case("width 4096", lambda: txt2img(width=4096), ("width", "2048", "4096")),
    Case("steps 0", lambda: txt2img(steps=0), ("steps must be between 1 and 150", "got 0")),
    Case("steps 10001", lambda: txt2img(steps=10001), ("steps must be between 1 and 150", "10001")),
    Case("steps 2.5 from the widget", lambda: widgets(steps=2.5), ("steps must be a whole number", "2.5")),
    Case("CFG NaN", lambda: txt2img(cfg_scale=math.nan), ("CFG scale must be a finite number", "nan")),
    Case("CFG infinity from the widget", lambda: widgets(cfg_scale="inf"), ("CFG scale", "finite", "inf")),
    Case("CFG -1", lambda: txt2img(cfg_scale=-1.0), ("CFG scale must be between 0 and 30", "-1")),
    Case("batch size 0", lambda: txt2img(batch_size=0), ("batch size must be between 1 and 8", "got 0")),
    Case("batch size 64", lambda: txt2img(batch_size=64), ("batch size must be between 1 and 8", "64")),
    Case("batch count 0", lambda: txt2img(batch_count=0), ("batch count must be between 1 and 100", "got 0")),
    Case("seed -2", lambda: txt2img(seed=-2), ("seed must be between -1 and 4294967295", "-2")),
    Case("seed 2**32", lambda: txt2img(seed=2**32), ("seed", "4294967295", "4294967296")),
    Case("seed 'abc' from the widget", lambda: widgets(seed="abc"), ("seed must be a number", "'abc'")),
    Case("unknown sampler", lambda: txt2img(sampler="Euler z"), ("unknown sampler 'Euler z'", "Euler a")),
    Case("unknown model", lambda: txt2img(model="no-such-model"), ("unknown model 'no-such-model'", TINY)),
    Case("model path traversal", lambda: txt2img(model="../../etc/passwd"), ("model", "'..'")),
    Case("10,000-character prompt", lambda: txt2img(prompt="a" * 10_000),
         ("prompt is 10,000 characters long", "the limit is 4,000")),
    Case("10,000-character negative prompt", lambda: txt2img(negative_prompt="b" * 10_000),
         ("negative prompt is 10,000 characters long",)),
    Case("NUL in the prompt", lambda: txt2img(prompt="a red\x00circle"), ("prompt contains a NUL character",)),
    Case("unknown preview method", lambda: txt2img(preview_method="bogus"), ("preview method", "'bogus'")),
    Case("unknown LoRA in the prompt", lambda: txt2img(prompt="a red circle <lora:nope:0.8>"),
         ("unknown LoRA 'nope'",)),
    Case("img2img without an image", lambda: Img2ImgRequest(**GOOD, init_image=None), ("init image must be an image",)),
    Case("img2img strength 1.5", lambda: img2img(strength=1.5), ("denoising strength must be between 0 and 1", "1.5")),
    Case("img2img resize mode", lambda: img2img(resize_mode="zoom"), ("resize mode must be one of", "'zoom'")),
    Case("img2img upload that is not an image", lambda: img2img(load_image(b"GIF89a but not really", "input image")),
         ("input image", "not an image")),
    Case("img2img decompression bomb", lambda: img2img(load_image(picture(size=(4100, 4100)), "input image")),
         ("input image is too large", "16,777,216 pixels")),
    Case("img2img 4x4 image", lambda: img2img(picture(size=(4, 4))), ("at least 8x8",)),
    Case("inpaint masked content", lambda: InpaintRequest(**GOOD, init_image=picture(), strength=0.5,
                                                         mask=Image.new("L", (64, 64), 255), masked_content="glitter"),
         ("masked content must be one of", "latent noise", "'glitter'")),
]


@pytest.fixture(scope="module")
def shared_engine(models_dir, tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    out = tmp_path_factory.mktemp("bad-inputs")
    engine = Engine(AppConfig(models_dir=models_dir, outputs_dir=out / "outputs", cache_dir=out / "cache",
                              default_model=TINY)).start()
    yield engine
    engine.shutdown()


def user_sees(engine, make_request) -> tuple[str, list]:
    """Run the request as a tab does; return the last status line (as text) and the gallery shown."""
    status, gallery = "", []
    for preview, status_html, shown, infotext, outputs in stream_job(engine, Session(), make_request):
        if isinstance(status_html, str):
            status = status_html
        if isinstance(shown, list):
            gallery = shown
    return status, gallery


def next_job_runs(engine) -> None:
    before = len(list(engine.config.outputs_dir.rglob("*.png")))
    status, gallery = user_sees(engine, lambda: txt2img(seed=7, steps=1, preview_method="off"))
    assert "Done: 1 image(s), seed 7" in html.unescape(status), status
    assert len(gallery) == 1
    assert len(list(engine.config.outputs_dir.rglob("*.png"))) == before + 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_clear_message_and_the_next_job_runs(shared_engine, case):
    status, gallery = user_sees(shared_engine, case.make)
    text = html.unescape(status)
    assert "ldm-status-error" in status, text
    for words in case.words:
        assert words in text, f"{words!r} not in {text!r}"
    assert gallery == []
    next_job_runs(shared_engine)


def test_catalogue_is_large_enough():
    assert len(CASES) + len(FLAG_CASES) >= 25


@pytest.mark.parametrize("prompt", ["一只红色的圆形 on a blue background", "café crème — «quoted», naïve",
                                    "emoji 🟥🔵 and RTL שלום, zero-width\u200bjoiner", "line one\nline two, with: colons"])
def test_unicode_prompts_work_and_are_kept_in_the_infotext(shared_engine, prompt):
    from ldm_ui.metadata import parse_infotext, read_png_parameters

    finished = shared_engine.generate(txt2img(prompt=prompt), timeout=120)
    with Image.open(finished.outputs[0].path) as image:
        assert parse_infotext(read_png_parameters(image)).prompt == prompt
    next_job_runs(shared_engine)


FLAG_CASES = [
    (["--port", "abc"], "invalid int value: 'abc'"),
    (["--port", "70000"], "--port must be between 1 and 65535, got 70000"),
    (["--preview-every", "0"], "--preview-every must be 1 or more, got 0"),
    (["--preview", "sometimes"], "invalid choice: 'sometimes'"),
    (["--max-file-size-mb", "0"], "--max-file-size-mb must be between 1 and 10000"),
    (["--cpu-threads", "-1"], "--cpu-threads must be between 0 (auto) and 1024, got -1"),
    (["--auth", "alice"], "expected 'user:password', got 'alice'"),
    (["--auth-file", "/nonexistent/logins.txt"], "does not exist"),
    (["--share"], "--share makes a public link"),
    (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize("argv,words", FLAG_CASES, ids=[" ".join(a) for a, _ in FLAG_CASES])
def test_bad_flag_is_refused_clearly_and_good_flags_then_start(argv, words, capsys, shared_engine):
    with pytest.raises((ConfigError, SystemExit)) as refused:
        config_from_args(argv)
    message = str(refused.value) if isinstance(refused.value, ConfigError) else capsys.readouterr().err
    if isinstance(refused.value, SystemExit):
        assert refused.value.code == 2
    assert words in message, message
    good = config_from_args(["--port", "7861", "--preview-every", "2", "--auth", "alice:pw", "--share"])
    assert good.port == 7861 and good.auth == [("alice", "pw")]
    next_job_runs(shared_engine)
