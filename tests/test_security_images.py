"""Decompression bombs are refused from their header in every tab that takes an image, before a pixel is decoded.

The bomb is a 12000 x 12000 grayscale PNG of about 140 KB (144 million pixels, 144 MB once decoded). It is
sent through the API to PNG info, the latent inspector, a ControlNet unit, the interpolate images and the
inpaint editor (which Gradio decodes itself, so Pillow's own limit must hold), and as a data: URL to img2img.
Each is refused with a message and this process (the server runs in it) grows by far less than the image.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from browser_support import running_app
from ldm_ui.images import ImageUploadError, install_decode_limit, load_image
from test_security_guard import PeakRss
from test_security_outputs import call

MB = 1024 * 1024
SIDE = 12000
LIMIT_MESSAGE = "too large to decode safely"


def png_bomb(path: Path, side: int = SIDE) -> Path:
    """A valid grayscale PNG of side x side black pixels, compressed row by row (never held in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + one byte per pixel
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    return png_bomb(tmp_path_factory.mktemp("bomb") / "bomb.png")


def test_the_bomb_is_small_and_refused_by_the_loader(bomb):
    assert bomb.stat().st_size < 500_000
    with pytest.raises(ImageUploadError, match=LIMIT_MESSAGE):
        load_image(bomb, "image")


def test_pillow_itself_refuses_it_once_the_app_started(bomb, app_config):
    install_decode_limit()  # what app.create_app does at start-up
    with pytest.raises(Image.DecompressionBombError):
        Image.open(bomb)
    small = Image.new("RGB", (4096, 4096))  # the largest allowed image still opens
    small.save(bomb.parent / "ok.png")
    with Image.open(bomb.parent / "ok.png") as image:
        image.load()


def test_every_tab_refuses_the_bomb_before_decoding(bomb, app_config):
    with running_app(app_config) as (url, _, _):
        client = Client(url, verbose=False)
        attempts = {
            "PNG info": lambda: client.predict(handle_file(str(bomb)), api_name="/pnginfo"),
            "latent inspector": lambda: client.predict(handle_file(str(bomb)), None, api_name="/inspect_latents"),
            "ControlNet image": lambda: call(client, "/txt2img", prompt="a red circle", steps=2,
                                             controlnet1_enabled=True, controlnet1_image=handle_file(str(bomb)),
                                             controlnet1_model="none"),
            "interpolate images": lambda: call(client, "/interpolate", mode="images", prompt="a red circle",
                                               frames=2, steps=2, image_a=handle_file(str(bomb)),
                                               image_b=handle_file(str(bomb))),
            "inpaint editor": lambda: client.predict(
                editor={"background": handle_file(str(bomb)), "layers": [], "composite": None},
                uploaded_mask=None, prompt="x", steps=2, api_name="/inpaint"),
        }
        for tab, attempt in attempts.items():
            with PeakRss() as memory:
                assert_refused(tab, attempt)
            assert memory.growth_mb < 60, f"{tab}: RSS grew by {memory.growth_mb:.0f} MB while refusing"
        # img2img given the bomb as a data: URL in the payload
        data_url = "data:image/png;base64," + base64.b64encode(bomb.read_bytes()).decode()
        answer = httpx.post(url + "/gradio_api/call/img2img", json={"data": [
            {"url": data_url, "path": None, "meta": {"_type": "gradio.FileData"}}]}, timeout=60)
        assert answer.status_code == 400 and "data: URLs" in answer.text


def assert_refused(tab: str, attempt) -> None:
    """The tab answers with our message, or Gradio refuses the input because Pillow's limit stopped its header
    read (Gradio opens image inputs itself); either way it names the limit."""
    try:
        answer = str(attempt())
    except AppError as error:
        answer = str(error)
    assert LIMIT_MESSAGE in answer or "exceeds limit of 16777216 pixels" in answer, f"{tab}: {answer[:300]}"
