"""Extensions: broken ones are disabled and reported by name while generation goes on; the bundled
wildcards and X/Y plot extensions do what users expect."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ldm_ui.config import PROJECT_ROOT
from ldm_ui.engine.engine import JobFailed
from ldm_ui.extensions import ExtensionManager
from ldm_ui.metadata import parse_infotext, read_png_parameters
from ldm_ui.requests import Txt2ImgRequest
from ldm_ui.ui.extensions_ui import failure_banner, render_table

BUNDLED = PROJECT_ROOT / "extensions"
FAST = dict(steps=2, width=64, height=64, preview_method="off")


def write_extension(root: Path, name: str, body: str, entry: str = "__init__.py") -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / entry).write_text(textwrap.dedent(body), encoding="utf-8")


@pytest.fixture
def ext_root(app_config, tmp_path):
    app_config.extensions_dir = tmp_path / "extensions"
    app_config.extensions_dir.mkdir()
    return app_config.extensions_dir


def test_broken_extensions_are_disabled_reported_and_generation_still_works(engine, ext_root, caplog):
    write_extension(ext_root, "breaks-on-import", """
        raise RuntimeError("missing dependency foo")
    """)
    write_extension(ext_root, "breaks-in-hook", """
        def register(api):
            def hook(info):
                if info.step == 1:
                    raise ValueError("hook exploded")
            api.add_step_hook(hook)
    """)
    write_extension(ext_root, "breaks-in-transform", """
        def register(api):
            api.add_prompt_transform(lambda prompt, seed: 1 / 0)
    """)
    write_extension(ext_root, "no-register", "X = 1\n", entry="extension.py")
    write_extension(ext_root, "upper", """
        def register(api):
            api.add_prompt_transform(lambda prompt, seed: prompt.upper())
    """)
    manager = ExtensionManager(engine.config, engine).load_all()
    records = manager.records
    assert records["breaks-on-import"].state == "failed"
    assert "RuntimeError: missing dependency foo" in records["breaks-on-import"].error
    assert "no register(api)" in records["no-register"].error
    assert records["breaks-in-hook"].state == records["upper"].state == "enabled"
    assert "extension breaks-on-import disabled" in caplog.text

    finished = engine.generate(Txt2ImgRequest(prompt="a red circle", seed=3, **FAST), timeout=120)
    assert len(finished.outputs) == 1 and finished.outputs[0].image.size == (64, 64)
    assert parse_infotext(finished.outputs[0].infotext).prompt == "A RED CIRCLE"  # the healthy one still ran
    assert records["breaks-in-hook"].state == "failed"
    assert "at step 2: ValueError: hook exploded" in records["breaks-in-hook"].error
    assert records["breaks-in-transform"].state == "failed"
    assert "ZeroDivisionError" in records["breaks-in-transform"].error
    assert "extension breaks-in-hook disabled" in caplog.text

    table, banner = render_table(manager), failure_banner(manager)
    for name in ("breaks-on-import", "breaks-in-hook", "breaks-in-transform", "no-register"):
        assert f"<b>{name}</b>" in table and f"**{name}**" in banner
    assert "hook exploded" in table and "missing dependency foo" in table
    # disabled hooks stay out of later jobs: a second job runs clean
    again = engine.generate(Txt2ImgRequest(prompt="a blue square", seed=3, **FAST), timeout=120)
    assert len(again.outputs) == 1


def test_toggle_is_persisted_and_disable_extensions_loads_nothing(engine, ext_root):
    write_extension(ext_root, "upper", """
        def register(api):
            api.add_prompt_transform(lambda prompt, seed: prompt.upper())
            api.add_setting("shout", "Shout", True)
    """)
    manager = ExtensionManager(engine.config, engine).load_all()
    message = manager.set_enabled("upper", False)
    assert "off" in message
    prompt = parse_infotext(engine.generate(Txt2ImgRequest(prompt="quiet", seed=1, **FAST)).outputs[0].infotext)
    assert prompt.prompt == "quiet"
    saved = json.loads((engine.config.cache_dir / "extensions.json").read_text())
    assert saved["disabled"] == ["upper"]

    fresh = ExtensionManager(engine.config, engine).load_all()
    assert fresh.records["upper"].state == "off" and not fresh.records["upper"].registered
    fresh.set_enabled("upper", True)
    assert ExtensionManager(engine.config, engine).load_all().records["upper"].state == "enabled"

    engine.config.disable_extensions = True
    skipped = ExtensionManager(engine.config, engine).load_all()
    assert skipped.records["upper"].state == "skipped"
    assert "--disable-extensions" in render_table(skipped)


def test_settings_are_checked_and_kept_across_restarts(engine, ext_root):
    write_extension(ext_root, "tuned", """
        def register(api):
            api.add_setting("depth", "Depth", 3, minimum=1, maximum=8)
            api.add_setting("mode", "Mode", "fast", choices=["fast", "slow"])
    """)
    manager = ExtensionManager(engine.config, engine).load_all()
    manager.set_setting("tuned", "depth", 5)
    with pytest.raises(Exception, match="'Depth' must be between 1 and 8, got 99"):
        manager.set_setting("tuned", "depth", 99)
    with pytest.raises(Exception, match="'Mode' must be one of fast, slow"):
        manager.set_setting("tuned", "mode", "medium")
    reloaded = ExtensionManager(engine.config, engine).load_all()
    assert reloaded.records["tuned"].settings["depth"].value == 5


def test_controlnet_preprocessor_registry_is_guarded(engine, ext_root):
    write_extension(ext_root, "edges", """
        from PIL import ImageOps

        def register(api):
            api.add_controlnet_preprocessor("invert", lambda image: ImageOps.invert(image.convert("RGB")))
            api.add_controlnet_preprocessor("broken", lambda image: image.nope())
    """)
    manager = ExtensionManager(engine.config, engine).load_all()
    from PIL import Image

    black = Image.new("RGB", (8, 8), "black")
    assert engine.controlnet_preprocessors["invert"](black).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(Exception, match="preprocessor 'broken' \\(extension edges\\) failed"):
        engine.controlnet_preprocessors["broken"](black)
    assert manager.records["edges"].state == "failed"


def test_there_is_no_extension_installer_route(app_config, ext_root):
    """--share/--listen users must not be able to add code: the app has no install or update endpoint."""
    import app

    shutil.copytree(BUNDLED / "wildcards", ext_root / "wildcards")
    app_config.listen = True
    engine, demo = app.create_app(app_config)
    try:
        names = [str(getattr(fn, "api_name", "") or "") + " " + fn.name for fn in demo.fns.values()]
        assert names
        assert not [n for n in names if "install" in n.lower() or "update_ext" in n.lower() or "git" in n.lower()]
        labels = [getattr(block, "label", "") or getattr(block, "value", "") for block in demo.blocks.values()]
        assert not [label for label in labels if isinstance(label, str) and "install" in label.lower()
                    and "cannot install" not in label.lower()]
    finally:
        engine.shutdown()


# ---- the bundled extensions


@pytest.fixture
def bundled(engine):
    engine.config.extensions_dir = BUNDLED
    return ExtensionManager(engine.config, engine).load_all()


def test_bundled_extensions_load(bundled):
    assert bundled.records["wildcards"].state == "enabled"
    assert bundled.records["xyplot"].state == "enabled"
    assert [title for title, _ in bundled.tabs()] == ["X/Y plot"]


def test_wildcards_reproduce_with_the_same_seed(engine, bundled):
    colors = set((BUNDLED / "wildcards" / "wildcards" / "color.txt").read_text().split()) - {"#"}
    request = Txt2ImgRequest(prompt="a __color__ circle on a __color__ background", seed=11, **FAST)
    first, second = engine.generate(request).outputs[0], engine.generate(request).outputs[0]
    prompt = parse_infotext(first.infotext).prompt
    assert "__" not in prompt and prompt.split()[1] in colors and prompt.split()[-2] in colors
    assert parse_infotext(second.infotext).prompt == prompt
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    with open(first.path, "rb") as handle:
        from PIL import Image

        assert parse_infotext(read_png_parameters(Image.open(handle))).prompt == prompt
    expand = engine.prompt_transforms[0]
    picks = {expand("__color__", seed) for seed in range(40)}
    assert len(picks) >= 4 and picks <= colors, "different seeds should pick different lines"


def test_wildcards_refuse_names_outside_their_folder(engine, bundled):
    for name in ("../xyplot/grid", "/etc/passwd", "nosuchlist"):
        with pytest.raises(JobFailed, match="wildcard"):
            engine.generate(Txt2ImgRequest(prompt=f"a __{name}__ circle", seed=1, **FAST), timeout=120)
    assert bundled.records["wildcards"].state == "enabled", "a user's bad wildcard must not disable the extension"


def test_xyplot_makes_a_labeled_grid_of_the_right_size(engine, bundled):
    import sys

    grid_module = sys.modules["ldm_ui_extension_xyplot.grid"]
    api_error = Exception
    xs = grid_module.parse_values("CFG scale", "1, 7", api_error)
    ys = grid_module.parse_values("Steps", "1-3 (+2)", api_error)
    assert (xs, ys) == ([1.0, 7.0], [1, 3])
    from ldm_ui.extensions import ExtensionApi

    api = ExtensionApi(bundled, bundled.records["xyplot"])
    base = Txt2ImgRequest(prompt="a red circle", seed=-1, sampler="Euler", **{**FAST, "steps": 2})
    cells = grid_module.plan_cells(api, base, "CFG scale", xs, "Steps", ys)
    assert len({c.request.seed for c in cells}) == 1 and cells[0].request.seed >= 0  # one seed for the grid
    images = [None] * len(cells)
    for index, _event, image in grid_module.run_cells(api, cells):
        if image is not None:
            images[index] = image
    assert all(images)
    rows = [[images[i] for i, c in enumerate(cells) if c.y_index == y] for y in range(len(ys))]
    x_labels = [grid_module.label("CFG scale", v) for v in xs]
    y_labels = [grid_module.label("Steps", v) for v in ys]
    assert x_labels == ["CFG scale: 1", "CFG scale: 7"] and y_labels == ["Steps: 1", "Steps: 3"]
    grid = grid_module.make_grid(rows, x_labels, y_labels)
    layout = grid_module.grid_layout(rows, x_labels, y_labels)
    pixels = np.asarray(grid).astype(int)
    left, top, cell_w = layout.left, layout.top, layout.cell_w
    assert left > 40 and top > 8, "room for the labels"
    assert cell_w >= 64
    assert grid.size == (left + 2 * cell_w, top + 2 * 64)
    # every label area holds dark text on white; every cell is the image generated for it
    for x in range(2):
        assert (pixels[:top, left + x * cell_w: left + (x + 1) * cell_w] < 100).any(), f"no x label over column {x}"
    gap = pixels[:top, left + cell_w - 2: left + cell_w + 2]
    assert (gap > 200).all(), "x labels must not run into each other"
    for y in range(2):
        assert (pixels[top + y * 64: top + (y + 1) * 64, :left] < 100).any(), f"no y label beside row {y}"
        for x in range(2):
            x0, y0 = layout.image_origin(x, y, 64)
            cell = pixels[y0: y0 + 64, x0: x0 + 64]
            assert np.array_equal(cell, np.asarray(rows[y][x]).astype(int))
    assert not np.array_equal(np.asarray(rows[0][0]), np.asarray(rows[1][1])), "cells must differ"


def test_xyplot_refuses_bad_values_before_running(engine, bundled):
    import sys

    grid_module = sys.modules["ldm_ui_extension_xyplot.grid"]
    with pytest.raises(ValueError, match="'abc' is not a number"):
        grid_module.parse_values("CFG scale", "3, abc")
    with pytest.raises(ValueError, match="must be a whole number"):
        grid_module.parse_values("Steps", "2.5")
    from ldm_ui.extensions import ExtensionApi
    from ldm_ui.requests import RequestError

    api = ExtensionApi(bundled, bundled.records["xyplot"])
    base = Txt2ImgRequest(prompt="x", **FAST)
    with pytest.raises(RequestError, match="steps must be between 1 and 150, got 500"):
        grid_module.plan_cells(api, base, "Steps", [5, 500], "Nothing", [None])
    assert engine.queue_length == 0


def test_a_step_hook_can_stop_the_job(engine, ext_root):
    write_extension(ext_root, "stopper", """
        def register(api):
            def hook(info):
                assert info.latents.shape[-1] == 8  # 64 px / 8
                if info.step == 0 and "stop" in info.request.prompt:
                    info.stop = True
            api.add_step_hook(hook)
    """)
    manager = ExtensionManager(engine.config, engine).load_all()
    from ldm_ui.engine.engine import JobCancelled

    with pytest.raises(JobCancelled):
        engine.generate(Txt2ImgRequest(prompt="please stop", seed=1, **{**FAST, "steps": 4}), timeout=120)
    assert engine.generate(Txt2ImgRequest(prompt="go on", seed=1, **FAST), timeout=120).outputs
    assert manager.records["stopper"].state == "enabled"
