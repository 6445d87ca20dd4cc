"""Scripting img2img and inpaint over HTTP: the named /img2img and /inpaint endpoints, and bad uploads."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from browser_support import running_app
from ldm_ui.metadata import read_png_parameters


def _gallery_paths(result) -> list[str]:
    paths = []
    for item in result[2] or []:
        image = item["image"]
        paths.append(image["path"] if isinstance(image, dict) else image)
    return paths


def test_img2img_and_inpaint_endpoints_take_images_by_name(app_config, tmp_path):
    from gradio_client import Client, handle_file

    source = Image.new("RGB", (64, 64), (30, 60, 200))
    ImageDraw.Draw(source).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    source.save(tmp_path / "source.png")
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((24, 24, 40, 40), fill=255)
    mask.save(tmp_path / "mask.png")
    truncated = (tmp_path / "source.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(truncated[: len(truncated) // 2])

    with running_app(app_config) as (url, _, _):
        client = Client(url, verbose=False)
        endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/img2img", "/inpaint"} <= set(endpoints)
        img2img = client.predict(init_image=handle_file(str(tmp_path / "source.png")), prompt="a red circle",
                                 strength=0.5, steps=4, seed=9, api_name="/img2img")
        inpaint = client.predict(
            editor={"background": handle_file(str(tmp_path / "source.png")), "layers": [], "composite": None},
            uploaded_mask=handle_file(str(tmp_path / "mask.png")), prompt="a red circle", steps=4, seed=9,
            api_name="/inpaint")
        broken = client.predict(init_image=handle_file(str(tmp_path / "truncated.png")), prompt="x",
                                api_name="/img2img")
        after = client.predict(init_image=handle_file(str(tmp_path / "source.png")), prompt="x", steps=2,
                               api_name="/img2img")

    [img2img_path] = _gallery_paths(img2img)
    with Image.open(img2img_path) as image:
        parameters = read_png_parameters(image)
    assert "Denoising strength: 0.5" in parameters and "Seed: 9" in parameters
    assert "2 of 4 steps run" in img2img[1]

    [inpaint_path] = _gallery_paths(inpaint)
    with Image.open(inpaint_path) as image:
        parameters = read_png_parameters(image)
        out = np.asarray(image.convert("RGB"))
    assert "Mask blur: 4" in parameters and "Masked content: original" in parameters
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(4))) == 0
    assert np.array_equal(out[outside], np.asarray(source)[outside])

    assert "input image: the file is truncated or corrupted" in broken[1], broken[1]
    assert len(_gallery_paths(after)) == 1  # the app kept serving
