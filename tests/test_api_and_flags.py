"""Scripting the app over HTTP with gradio_client, and the launch flags a user sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from browser_support import running_app
from ldm_ui.config import ConfigError, config_from_args
from ldm_ui.metadata import read_png_parameters

ROOT = Path(__file__).resolve().parent.parent


def test_txt2img_endpoint_takes_prompt_by_name_and_returns_images(app_config):
    from gradio_client import Client

    with running_app(app_config) as (url, _, _):
        client = Client(url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)
        params = {p["parameter_name"]: p for p in api["named_endpoints"]["/txt2img"]["parameters"]}
        assert all(p["parameter_has_default"] for name, p in params.items() if name != "prompt")
        first = client.predict(prompt="a red circle on a blue background", seed=5, api_name="/txt2img")
        again = client.predict(prompt="a red circle on a blue background", seed=5, api_name="/txt2img")
    gallery = first[2]
    assert len(gallery) == 1
    image_path = gallery[0]["image"]
    image_path = image_path["path"] if isinstance(image_path, dict) else image_path
    with Image.open(image_path) as image:
        assert image.size == (64, 64)
        assert "Seed: 5" in read_png_parameters(image)
        pixels = np.asarray(image.convert("RGB"))
    other = again[2][0]["image"]
    other = other["path"] if isinstance(other, dict) else other
    assert np.array_equal(pixels, np.asarray(Image.open(other).convert("RGB")))
    assert "Seed: 5" in first[3]


def test_share_without_auth_refuses_to_start_and_says_how_to_fix_it():
    result = subprocess.run([sys.executable, "app.py", "--share"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0
    assert "anyone who finds it could use your GPU" in result.stderr
    assert "--auth user:password" in result.stderr


def test_help_lists_every_flag():
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    for flag in ("--listen", "--port", "--share", "--auth", "--auth-file", "--share-without-auth", "--ckpt-dir",
                 "--medvram", "--lowvram", "--cpu-threads", "--model", "--preview"):
        assert flag in result.stdout


def test_share_with_auth_or_explicit_override_is_accepted(tmp_path):
    assert config_from_args(["--share", "--auth", "me:secret"]).auth == [("me", "secret")]
    assert config_from_args(["--share", "--share-without-auth"]).share_without_auth
    auth_file = tmp_path / "users.txt"
    auth_file.write_text("alice:one\n# comment\nbob:two\n")
    auth_file.chmod(0o600)
    assert config_from_args(["--auth-file", str(auth_file)]).auth == [("alice", "one"), ("bob", "two")]
    auth_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        config_from_args(["--auth-file", str(auth_file)])
    with pytest.raises(ConfigError, match="expected 'user:password'"):
        config_from_args(["--auth", "nopassword"])
