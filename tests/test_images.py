"""Uploaded images from strangers: bombs, truncated files, non-images, odd modes and EXIF rotation."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from ldm_ui.images import ImageUploadError, load_image
from ldm_ui.requests import MAX_IMAGE_PIXELS, RequestError


def encode(image: Image.Image, format: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height: what a bomb looks like before anything is decoded."""
    data = bytearray(encode(Image.new("L", (8, 8))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_is_refused_before_decoding_with_the_limit_named():
    bomb = png_claiming(5000, 5000)
    with pytest.raises(ImageUploadError) as refused:
        load_image(bomb, "input image")
    message = str(refused.value)
    # the size from the header, or its pixel count when Pillow's own limit (set at app start-up) refused first
    assert "input image" in message and ("5000x5000" in message or "25,000,000 pixels" in message)
    assert f"{MAX_IMAGE_PIXELS:,}" in message


def test_bomb_beyond_pillows_own_limit_gets_the_same_clear_message():
    with pytest.raises(ImageUploadError, match=f"the limit is {MAX_IMAGE_PIXELS:,} pixels"):
        load_image(png_claiming(20000, 20000), "input image")


def test_truncated_file_is_refused_clearly():
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noise)
    with pytest.raises(ImageUploadError, match="truncated or corrupted"):
        load_image(data[: len(data) // 2], "input image")


@pytest.mark.parametrize("data", [b"", b"hello, not an image" * 20, b"<svg xmlns='http://www.w3.org/2000/svg'/>",
                                  b"%PDF-1.4\n" + b"\x00" * 100])
def test_non_images_are_refused_clearly(data):
    with pytest.raises(ImageUploadError, match="not an image|cannot be read"):
        load_image(data, "input image")


def test_no_image_and_tiny_images_are_refused():
    with pytest.raises(ImageUploadError, match="no image"):
        load_image(None, "input image")
    with pytest.raises(ImageUploadError, match="at least 8x8"):
        load_image(encode(Image.new("RGB", (4, 4))), "input image")


def test_cmyk_becomes_rgb():
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    image = load_image(encode(cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    r, g, b = image.getpixel((8, 8))
    assert r > 230 and g < 30 and b < 30


def test_palette_with_transparency_and_la_are_flattened_on_white():
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    palette.info["transparency"] = 0
    assert load_image(encode(palette)).getpixel((0, 0)) == (255, 255, 255)
    opaque_palette = Image.new("P", (16, 16), 0)
    opaque_palette.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    assert load_image(encode(opaque_palette)).getpixel((0, 0)) == (0, 0, 255)
    half = Image.new("LA", (16, 16), (0, 128))
    assert load_image(encode(half)).getpixel((0, 0)) == (127, 127, 127)
    assert load_image(encode(half), mode="RGBA").getpixel((0, 0)) == (0, 0, 0, 128)


def test_16_bit_and_float_images_are_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    image = load_image(encode(Image.fromarray(ramp)))
    row = np.asarray(image)[0, :, 0]
    assert row[0] == 0 and row[-1] == 255 and 120 <= row[8] <= 140  # a ramp, not a white image
    floats = Image.fromarray(np.full((16, 16), 0.5, dtype=np.float32), mode="F")
    assert load_image(floats).getpixel((0, 0)) == (128, 128, 128)


def test_exif_rotation_is_applied():
    wide = Image.new("RGB", (32, 16), (0, 255, 0))
    wide.paste((255, 0, 0), (0, 0, 8, 16))  # red on the left
    exif = wide.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = load_image(encode(wide, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.size == (16, 32)
    r, g, _ = image.getpixel((8, 2))  # the left edge is now on top
    assert r > 200 and g < 60


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = load_image(buffer.getvalue()).getpixel((0, 0))
    assert r > 200 and b < 60


def test_paths_and_open_images_are_accepted(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (16, 16), (1, 2, 3)).save(path)
    assert load_image(path).getpixel((0, 0)) == (1, 2, 3)
    assert load_image({"path": str(path)}).getpixel((0, 0)) == (1, 2, 3)
    assert load_image(Image.new("L", (16, 16), 9)).getpixel((0, 0)) == (9, 9, 9)
    with pytest.raises(ImageUploadError, match="not a file"):
        load_image(tmp_path / "missing.png")


def test_img2img_tab_uses_the_loader():
    img2img = pytest.importorskip("ldm_ui.ui.img2img")
    settings = dict(strength=0.5, resize_mode="just resize", model="tiny-sd", preview_method=None, preview_every=1,
                    prompt="a red circle", negative_prompt="", sampler="Euler a", steps=2, cfg_scale=7.0, width=64,
                    height=64, seed=1, batch_count=1, batch_size=1, clip_skip=1,
                    **{f"controlnet{i}_enabled": False for i in (1, 2, 3)})
    big = Image.new("RGB", (4100, 4100))
    with pytest.raises(RequestError, match="too large"):
        img2img.to_request(init_image=big, **settings)
    cmyk = Image.new("CMYK", (64, 64), (0, 255, 255, 0))
    request = img2img.to_request(init_image=cmyk, **settings)
    assert request.init_image.mode == "RGB"
