"""Outpainting: the canvas grows by the asked pixels, the new area is inpainted, and the original's pixels beyond
the overlap are identical; on ordinary and 9-channel inpainting models."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ldm_ui.config import AppConfig
from ldm_ui.engine.tasks.outpaint import blur_spread_px, extend, fitting_blur, outpaint_mask
from ldm_ui.metadata import parse_infotext
from ldm_ui.requests import OutpaintRequest, RequestError
from tiny_models import build_tiny_sd

FAST = dict(prompt="a red circle on a blue background", steps=4, seed=3, sampler="Euler")


@pytest.fixture(scope="module")
def engine(models_dir, tmp_path_factory):
    from ldm_ui.engine.engine import Engine

    root = tmp_path_factory.mktemp("outpaint")
    shutil.copytree(models_dir / "diffusers", root / "models" / "diffusers")
    build_tiny_sd(root / "models" / "diffusers" / "tiny-inpaint", seed=1, in_channels=9)
    engine = Engine(AppConfig(models_dir=root / "models", outputs_dir=root / "outputs", default_model="tiny-sd")).start()
    yield engine
    engine.shutdown()


def scene(size=(64, 48)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((12, 8, 44, 40), fill=(220, 30, 30))
    return image


def kept_region(request: OutpaintRequest) -> tuple[slice, slice, slice, slice]:
    """(rows, cols) in the output and (rows, cols) in the input of the original's pixels beyond the overlap."""
    w, h = request.init_image.size
    o = request.overlap_px
    x0, x1 = (o if request.left else 0), w - (o if request.right else 0)
    y0, y1 = (o if request.up else 0), h - (o if request.down else 0)
    return (slice(request.up + y0, request.up + y1), slice(request.left + x0, request.left + x1),
            slice(y0, y1), slice(x0, x1))


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-inpaint"])
@pytest.mark.parametrize("fill", ["edge stretch", "blurred mirror", "latent noise"])
def test_canvas_grows_and_the_original_beyond_the_overlap_is_identical(engine, model, fill):
    request = OutpaintRequest(**FAST, model=model, init_image=scene(), left=16, right=32, down=24, fill=fill,
                              overlap_px=16, mask_blur_px=4)
    finished = engine.generate(request)
    image = finished.images[0]
    assert image.size == (64 + 16 + 32, 48 + 24)
    out_rows, out_cols, in_rows, in_cols = kept_region(request)
    np.testing.assert_array_equal(np.asarray(image)[out_rows, out_cols], np.asarray(scene())[in_rows, in_cols])
    new_area = np.asarray(image)[:, -32:].astype(int)
    assert np.abs(new_area - np.asarray(extend(scene(), request))[:, -32:]).max() > 0, "the new area was not painted"
    settings = parse_infotext(finished.outputs[0].infotext).settings
    assert (settings["Outpaint left"], settings["Outpaint right"], settings["Outpaint down"]) == ("16", "32", "24")
    assert "Outpaint up" not in settings and settings["Outpaint fill"] == fill
    assert "/outpaint/" in finished.outputs[0].path.replace("\\", "/")


def test_fills_start_the_new_area_from_the_edges():
    request = OutpaintRequest(prompt="x", init_image=scene(), right=16, up=8)
    stretched = np.asarray(extend(scene(), request))
    np.testing.assert_array_equal(stretched[8:, 64:], np.repeat(np.asarray(scene())[:, -1:], 16, axis=1))
    mirrored = np.asarray(extend(scene(), OutpaintRequest(prompt="x", init_image=scene(), right=16, up=8,
                                                          fill="blurred mirror")))
    np.testing.assert_array_equal(mirrored[8:, :64], np.asarray(scene()))  # the original itself is not blurred
    assert mirrored.shape == stretched.shape == (56, 80, 3)


def test_the_mask_covers_the_new_area_and_its_blurred_edge_stays_in_the_overlap():
    request = OutpaintRequest(prompt="x", init_image=scene(), left=24, overlap_px=20, mask_blur_px=4)
    mask = np.asarray(outpaint_mask(request, 4))
    assert (mask[:, :24] == 255).all()
    reach = 20 - blur_spread_px(4)
    assert (mask[:, 24:24 + reach] == 255).all() and (mask[:, 24 + reach:] == 0).all()
    assert fitting_blur(16, 8) <= 2 and blur_spread_px(fitting_blur(16, 8)) <= 8


def test_bad_outpaint_settings_are_refused_with_the_limit_named():
    with pytest.raises(RequestError, match="at least one side"):
        OutpaintRequest(prompt="x", init_image=scene())
    with pytest.raises(RequestError, match="outpaint left must be between 0 and 512"):
        OutpaintRequest(prompt="x", init_image=scene(), left=600)
    with pytest.raises(RequestError, match="outpaint fill must be one of edge stretch, blurred mirror, latent noise"):
        OutpaintRequest(prompt="x", init_image=scene(), left=8, fill="zeros")
    with pytest.raises(RequestError, match="2100x48; each side must be at most 2048"):
        OutpaintRequest(prompt="x", init_image=scene((1600, 48)), left=500)
