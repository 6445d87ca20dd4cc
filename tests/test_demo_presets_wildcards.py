"""With the built-in demo model: the demo-shapes preset makes the shape and color a wildcard picked, and the same
seed picks the same color and draws the same image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from ldm_ui.config import PROJECT_ROOT, AppConfig
from ldm_ui.metadata import parse_infotext
from ldm_ui.presets import PresetLibrary
from ldm_ui.requests import Txt2ImgRequest

DEMO = PROJECT_ROOT / "models" / "diffusers" / "demo-shapes"
pytestmark = pytest.mark.skipif(not (DEMO / "model_index.json").is_file(),
                                reason="the demo-shapes model is not in models/diffusers yet")
BRIGHT = ("red", "green", "blue", "yellow")


@pytest.fixture
def demo_engine(tmp_path):
    from ldm_ui.engine.engine import Engine
    from ldm_ui.extensions import ExtensionManager

    extensions = tmp_path / "extensions"
    shutil.copytree(PROJECT_ROOT / "extensions" / "wildcards", extensions / "wildcards")
    (extensions / "wildcards" / "wildcards" / "bright.txt").write_text("\n".join(BRIGHT) + "\n")
    config = AppConfig(models_dir=PROJECT_ROOT / "models", outputs_dir=tmp_path / "outputs",
                       cache_dir=tmp_path / "cache", extensions_dir=extensions, default_model="demo-shapes")
    engine = Engine(config).start()
    ExtensionManager(config, engine).load_all()
    yield engine
    engine.shutdown()


def test_demo_preset_with_a_wildcard_draws_the_picked_color(demo_engine):
    from ldm_ui.demo.judge import judge

    preset = PresetLibrary.load(PROJECT_ROOT / "presets").get("demo-shapes")
    settings = {k: getattr(preset, k) for k in ("model", "sampler", "steps", "cfg_scale", "width", "height")}
    picked = []
    for seed in (1, 2, 3):
        request = Txt2ImgRequest(prompt="a __bright__ circle on a black background", seed=seed,
                                 preview_method="off", **settings)
        output = demo_engine.generate(request, timeout=600).outputs[0]
        prompt = parse_infotext(output.infotext).prompt
        color = prompt.split()[1]
        assert color in BRIGHT and output.image.size == (64, 64)
        verdict = judge(output.image)
        assert (verdict.color, verdict.background) == (color, "black"), (prompt, verdict)
        picked.append((color, np.asarray(output.image)))
    again = demo_engine.generate(Txt2ImgRequest(prompt="a __bright__ circle on a black background", seed=1,
                                                preview_method="off", **settings), timeout=600).outputs[0]
    assert parse_infotext(again.infotext).prompt.split()[1] == picked[0][0]
    assert np.array_equal(np.asarray(again.image), picked[0][1])  # the seed also fixes the sampler's noise
