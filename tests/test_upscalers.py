"""Learned upscalers: found in their folders, recognised by spandrel, run tiled, never unpickled in full."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ldm_ui.config import AppConfig
from ldm_ui.engine.upscalers import UpscalerLibrary, run_tiled
from ldm_ui.requests import Failed, HiresFix, RequestError, Txt2ImgRequest
from tiny_upscalers import esrgan_state_dict, save_pth, save_safetensors, swinir_state_dict


class Payload:
    """Pickled as a call to open(marker, "w"): unpickling it in full would create the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.fixture
def library_config(tmp_path) -> AppConfig:
    models = tmp_path / "models"
    save_safetensors(esrgan_state_dict(scale=2), models / "ESRGAN" / "tiny-esrgan-2x.safetensors")
    save_safetensors(swinir_state_dict(scale=2), models / "SwinIR" / "tiny-swinir-2x.safetensors")
    save_pth({"params_ema": esrgan_state_dict(scale=4, seed=1)}, tmp_path / "extra" / "tiny-realesrgan-4x.pth")
    return AppConfig(models_dir=models, outputs_dir=tmp_path / "outputs", upscaler_dirs=[tmp_path / "extra"])


def scene(size=(40, 32)) -> Image.Image:
    image = Image.new("RGB", size, (30, 60, 200))
    ImageDraw.Draw(image).ellipse((8, 6, 30, 26), fill=(220, 30, 30))
    return image


def test_models_in_every_folder_are_listed_and_recognised_by_their_weights(library_config):
    library = UpscalerLibrary(library_config)
    assert library.pixel_upscalers() == ["Lanczos", "Nearest", "tiny-esrgan-2x", "tiny-swinir-2x",
                                         "tiny-realesrgan-4x"]
    assert library.hires_upscalers()[:6] == ["Latent", "Latent (antialiased)", "Latent (bicubic)",
                                             "Latent (bicubic antialiased)", "Latent (nearest)",
                                             "Latent (nearest-exact)"]
    for name, architecture, scale in (("tiny-esrgan-2x", "ESRGAN", 2), ("tiny-swinir-2x", "SwinIR", 2),
                                      ("tiny-realesrgan-4x", "ESRGAN", 4)):
        model = library.load(name)
        assert (model.architecture, model.scale) == (architecture, scale)
        assert model(scene()).size == (40 * scale, 32 * scale)


def test_upscale_reaches_the_exact_size_with_as_many_model_passes_as_needed(library_config):
    library = UpscalerLibrary(library_config)
    assert library.upscale(scene(), "tiny-esrgan-2x", 150, 120).size == (150, 120)  # 2x twice, then Lanczos down
    assert library.upscale(scene(), "Nearest", 80, 64).size == (80, 64)
    nearest = np.asarray(library.upscale(scene(), "Nearest", 80, 64))
    np.testing.assert_array_equal(nearest[::2, ::2], np.asarray(scene()))


def test_tiles_with_enough_overlap_give_the_same_pixels_as_one_pass(library_config):
    model = UpscalerLibrary(library_config).load("tiny-esrgan-2x")
    pixels = torch.rand(1, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model.descriptor(pixels)
        tiled = run_tiled(model.descriptor, pixels, 2, tile=24, overlap=40)
    assert tiled.shape == whole.shape == (1, 3, 100, 140)
    torch.testing.assert_close(tiled, whole, atol=1e-4, rtol=1e-4)


def test_a_pickle_with_code_is_never_run_and_the_file_is_listed_as_broken(library_config, tmp_path):
    marker = tmp_path / "pwned.txt"
    torch.save({"conv_first.weight": Payload(marker)}, library_config.models_dir / "ESRGAN" / "evil.pth")
    library = UpscalerLibrary(library_config)
    assert "evil" in library.pixel_upscalers()  # its header is a real torch checkpoint: found out on loading
    with pytest.raises(RequestError, match="upscaler 'evil' could not be loaded .* listed as broken"):
        library.load("evil")
    assert not marker.exists(), "the pickle's payload ran"
    assert "evil" not in library.pixel_upscalers()
    assert any(line.startswith("evil: ") for line in library.describe_broken())
    assert library.load("tiny-esrgan-2x").scale == 2  # the others keep working


def test_corrupt_and_unrecognised_files_are_listed_as_broken_not_a_crash(library_config):
    folder = library_config.models_dir / "ESRGAN"
    (folder / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    (folder / "random.pth").write_bytes(bytes(range(256)) * 4)
    save_safetensors({"just.a.weight": torch.zeros(3, 3)}, folder / "not-an-upscaler.safetensors")
    library = UpscalerLibrary(library_config)
    names = library.pixel_upscalers()
    assert "truncated" not in names and "random" not in names
    assert {line.split(":")[0] for line in library.describe_broken()} == {"random", "truncated"}
    with pytest.raises(RequestError, match="not-an-upscaler"):
        library.load("not-an-upscaler")
    assert "not-an-upscaler" in {line.split(":")[0] for line in library.describe_broken()}
    with pytest.raises(RequestError, match=r"upscaler 'truncated' is broken .*; choose one of: Lanczos, Nearest"):
        library.check_name("truncated", library.pixel_upscalers())


def test_unknown_name_is_refused_with_the_list(library_config):
    library = UpscalerLibrary(library_config)
    with pytest.raises(RequestError, match="unknown upscaler '4x-foo'; choose one of: Lanczos, Nearest, "
                                           "tiny-esrgan-2x"):
        library.load("4x-foo")


def test_hires_fix_with_a_learned_upscaler_from_upscaler_dir(library_config, models_dir, tmp_path):
    import shutil

    from ldm_ui.engine.engine import Engine

    shutil.copytree(models_dir / "diffusers", library_config.models_dir / "diffusers")
    library_config.default_model = "tiny-sd"
    engine = Engine(library_config).start()
    try:
        request = Txt2ImgRequest(prompt="a red circle", steps=2, seed=1, width=64, height=64,
                                 hires=HiresFix(upscaler="tiny-realesrgan-4x", scale=1.5, denoising_strength=0.3))
        finished = engine.generate(request)
        evil = library_config.models_dir / "ESRGAN" / "garbage.safetensors"
        evil.write_bytes(b"not safetensors at all")
        failed = list(engine.submit(request.with_changes(hires=HiresFix(upscaler="garbage"))).events())[-1]
    finally:
        engine.shutdown()
    assert finished.images[0].size == (96, 96)
    assert "Hires upscaler: tiny-realesrgan-4x" in finished.outputs[0].infotext
    assert isinstance(failed, Failed) and "'garbage' is broken" in failed.message
