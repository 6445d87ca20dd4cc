"""Shared fixtures: offline mode, a tiny model in a temporary models folder, and a started engine."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from ldm_ui.config import AppConfig  # noqa: E402
from tiny_models import build_tiny_sd  # noqa: E402

# tiny models gain nothing from threads, and two busy processes with 2 threads each on 2 cores thrash
torch.set_num_threads(1)
TINY = "tiny-sd"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    build_tiny_sd(root / "diffusers" / TINY)
    return root


@pytest.fixture
def app_config(models_dir, tmp_path) -> AppConfig:
    # preview_interval_s=0: a preview at every eligible step, so tests can count them (the tiny model's steps
    # take milliseconds; the app's default allows one preview per 0.1 s)
    return AppConfig(models_dir=models_dir, outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache",
                     default_model=TINY, preview_interval_s=0)


@pytest.fixture
def engine(app_config):
    from ldm_ui.engine.engine import Engine

    engine = Engine(app_config).start()
    yield engine
    engine.shutdown()
