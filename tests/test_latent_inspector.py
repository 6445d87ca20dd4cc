"""The latent inspector reports what a direct VAE round trip gives: sizes, value counts, channels and PSNR."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ldm_ui.requests import Failed, InspectLatentsRequest, RequestError
from ldm_ui.ui.inspector import describe


def test_numbers_shown_match_a_direct_vae_round_trip(engine):
    upload = Image.new("RGB", (130, 75), "navy")
    ImageDraw.Draw(upload).rectangle((20, 10, 90, 60), fill="yellow")
    found = engine.generate(InspectLatentsRequest(image=upload), timeout=120).result

    # directly: centre-crop to whole 8-pixel cells, encode (posterior mean), decode, compare
    cropped = upload.crop((1, 1, 129, 73))
    pipe = engine.models.current.pipe
    with torch.no_grad():
        mean = pipe.vae.encode(pipe.image_processor.preprocess(cropped)).latent_dist.mean
        decoded = pipe.image_processor.postprocess(pipe.vae.decode(mean).sample, output_type="pil")[0]
    scaled = mean * pipe.vae.config.scaling_factor
    mse = np.mean((np.asarray(cropped, np.float64) - np.asarray(decoded, np.float64)) ** 2)
    psnr = 10 * math.log10(255 ** 2 / mse)

    assert found.size == (128, 72) and np.array_equal(np.asarray(found.original), np.asarray(cropped))
    assert found.pixel_values == 128 * 72 * 3 == 27_648
    assert found.latent_values == scaled.numel() == 16 * 9 * 4
    assert found.compression == 48
    # the runner decodes latent*scale/scale, which can move a pixel by one level: equal to the shown 2 decimals
    assert found.psnr_db == pytest.approx(psnr, abs=0.01)
    assert np.abs(np.asarray(found.reconstruction, np.int16) - np.asarray(decoded, np.int16)).max() <= 1
    assert len(found.channels) == 4 and found.channels[0].size == (128, 72)
    for index, stats in enumerate(found.channel_stats):
        channel = scaled[0, index]
        assert stats.minimum == pytest.approx(float(channel.min()), abs=1e-5)
        assert stats.maximum == pytest.approx(float(channel.max()), abs=1e-5)
    # each channel image spans black..white: its own min..max stretched
    assert found.channels[1].getextrema() == (0, 255)

    text = describe(found)
    assert "128×72×3 = 27,648 values" in text
    assert "16×9×4 = 576 values" in text and "48× smaller" in text
    shown = float(re.search(r"PSNR:\*\* ([\d.]+) dB", text)[1])
    assert shown == pytest.approx(psnr, abs=0.011)
    assert "The 130×75 upload was centre-cropped to 128×72" in text


def test_bad_uploads_are_refused_by_name():
    with pytest.raises(RequestError, match="image is 4x4; images must be at least 8x8 pixels"):
        InspectLatentsRequest(image=Image.new("RGB", (4, 4)))
    with pytest.raises(RequestError, match="image must be an image, got str"):
        InspectLatentsRequest(image="cat.png")


def test_an_unknown_model_fails_with_its_name(engine):
    with pytest.raises(RequestError, match="unknown model 'no-such-model'"):
        engine.submit(InspectLatentsRequest(image=Image.new("RGB", (64, 64)), model="no-such-model"))
    events = list(engine.submit(InspectLatentsRequest(image=Image.new("RGB", (64, 64)))).events(timeout=60))
    assert not isinstance(events[-1], Failed)


def test_the_inspector_status_says_interrupted_once_and_no_server_path(tmp_path):
    """Issue 14: the status read "Interrupted (interrupted)."; a failure showed the server's models path."""
    from types import SimpleNamespace

    from ldm_ui.config import AppConfig
    from ldm_ui.requests import Cancelled
    from ldm_ui.ui.inspector import inspect

    config = AppConfig(models_dir=tmp_path / "models", outputs_dir=tmp_path / "outputs")
    picture = tmp_path / "in.png"
    Image.new("RGB", (16, 16)).save(picture)

    def status_for(event) -> str:
        job = SimpleNamespace(events=lambda: iter([event]), done=SimpleNamespace(is_set=lambda: True))
        engine = SimpleNamespace(config=config, submit=lambda request: job)
        return next(inspect(engine, str(picture), None))[0]

    assert "Interrupted.</span>" in status_for(Cancelled())
    failed = status_for(Failed(f"no VAE in {tmp_path / 'models' / 'diffusers' / 'x'}"))
    assert "no VAE in models/diffusers/x" in failed and str(tmp_path) not in failed
