"""Pickle weights in a diffusers or ControlNet folder load only with --allow-pickle.

A diffusers folder and a ControlNet folder whose weights are only `.bin` files (pickles, which can run code
when loaded) are placed in the models folder and asked for through the running app's API: both are refused
with a message that says why and what to do, and the server keeps serving. With --allow-pickle they load.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from gradio_client import Client, handle_file
from PIL import Image
from safetensors.torch import load_file

from adapter_files import build_tiny_controlnet
from browser_support import running_app
from conftest import TINY
from test_security_outputs import call


def as_pickles(folder: Path) -> Path:
    """Rewrite every .safetensors file of a diffusers folder as the .bin file transformers/diffusers also read."""
    for path in list(folder.rglob("*.safetensors")):
        name = "pytorch_model.bin" if path.name == "model.safetensors" else path.name.replace(".safetensors", ".bin")
        torch.save(load_file(path), path.with_name(name))
        path.unlink()
    return folder


def pickled_models(models_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(models_dir, root)
    as_pickles(shutil.copytree(root / "diffusers" / TINY, root / "diffusers" / "pickled"))
    as_pickles(build_tiny_controlnet(root / "diffusers" / TINY / "unet", root / "ControlNet" / "pickled-cn"))
    return root


def test_pickle_only_folders_are_refused_without_allow_pickle(app_config, models_dir, tmp_path):
    app_config.models_dir = pickled_models(models_dir, tmp_path)
    with running_app(app_config) as (url, _, _):
        client = Client(url, verbose=False)
        result = call(client, "/txt2img", prompt="a red circle", steps=2, model="pickled")
        assert "only pickle weights" in str(result[1]) and "--allow-pickle" in str(result[1])
        assert str(tmp_path) not in str(result[1])  # no server paths in the message
        Image.new("RGB", (64, 64), "white").save(tmp_path / "control.png")
        result = call(client, "/txt2img", prompt="a red circle", steps=2, model=TINY, controlnet1_enabled=True,
                      controlnet1_image=handle_file(str(tmp_path / "control.png")), controlnet1_model="pickled-cn")
        assert "only pickle weights" in str(result[1]) and "--allow-pickle" in str(result[1])
        ok = call(client, "/txt2img", prompt="a red circle", steps=2, model=TINY)
        assert "Done" in str(ok[1])


def test_pickle_only_controlnet_is_refused_and_allowed_with_the_flag(app_config, models_dir, tmp_path, engine):
    from ldm_ui.engine.controlnet import ControlNetError, resolve_controlnet, load_controlnet
    from ldm_ui.engine.models import ModelError

    app_config.models_dir = pickled_models(models_dir, tmp_path)
    base = engine.switch_model(TINY).pipe
    entry = resolve_controlnet(app_config, "pickled-cn")
    try:
        load_controlnet(app_config, entry, base, torch.float32, torch.device("cpu"))
        raise AssertionError("a pickle-only ControlNet loaded without --allow-pickle")
    except (ModelError, ControlNetError) as error:
        assert "only pickle weights" in str(error) and "--allow-pickle" in str(error)
    app_config.allow_pickle = True
    assert load_controlnet(app_config, entry, base, torch.float32, torch.device("cpu")) is not None
