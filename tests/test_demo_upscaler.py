"""The built-in learned upscaler: listed and loaded like any upscaler, and better than Lanczos on demo scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.demo import data
from ldm_ui.demo.train_upscaler import measure
from ldm_ui.requests import Finished, Txt2ImgRequest, UpscaleRequest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "models" / "RealESRGAN" / "demo-shapes-2x.safetensors"


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    work = tmp_path_factory.mktemp("demo-upscaler")
    engine = Engine(AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache")).start()
    yield engine
    engine.shutdown()


def test_the_shipped_upscaler_is_listed_and_loads_through_spandrel(demo_engine):
    assert SHIPPED.is_file()
    assert "demo-shapes-2x" in demo_engine.upscalers.pixel_upscalers()
    upscaler = demo_engine.upscalers.load("demo-shapes-2x")
    assert upscaler.scale == 2 and upscaler.architecture == "RealESRGAN Compact"


def test_it_beats_lanczos_on_held_out_scenes(demo_engine):
    figures = measure(demo_engine.upscalers.load("demo-shapes-2x"), count=24)
    assert figures["model"] > figures["lanczos"] + 3.0, figures


def test_extras_upscales_a_demo_image_keeping_its_shape_and_colors(demo_engine):
    made = demo_engine.generate(Txt2ImgRequest(prompt="a red circle on a blue background", seed=4, steps=20))
    small = made.outputs[0].image
    finished = demo_engine.generate(UpscaleRequest(images=(small,), upscaler="demo-shapes-2x", scale=2))
    assert isinstance(finished, Finished)
    [output] = finished.outputs
    assert output.image.size == (128, 128)
    big = np.asarray(output.image, dtype=np.float32)
    back = np.asarray(output.image.resize(small.size, Image.BOX), dtype=np.float32)
    assert np.abs(back - np.asarray(small, dtype=np.float32)).mean() < 4, "the upscale moved or recolored things"
    red, blue = np.array(data.PALETTE["red"]), np.array(data.PALETTE["blue"])
    centre, corner = big[48:80, 48:80].reshape(-1, 3).mean(0), big[:12, :12].reshape(-1, 3).mean(0)
    assert np.linalg.norm(centre - red) < np.linalg.norm(centre - blue), centre
    assert np.linalg.norm(corner - blue) < np.linalg.norm(corner - red), corner
