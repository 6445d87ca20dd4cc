"""Start-up order (issue 14): app.py serves the app's page before torch and diffusers are imported; the first
model load imports them, on the engine's worker. Checked in a fresh interpreter, since the test process has long
imported torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from ldm_ui.engine.registry import TASKS

ROOT = Path(__file__).resolve().parent.parent

SERVE_THEN_LOAD = textwrap.dedent("""
    import json, sys, urllib.request
    import app
    from ldm_ui.config import config_from_args

    HEAVY = ("torch", "diffusers", "transformers", "safetensors", "accelerate", "peft", "spandrel")
    config = config_from_args(["--port", sys.argv[1], "--outputs-dir", sys.argv[2], "--api"])
    engine, demo = app.start_serving(config)  # what main() does before it submits the first load
    with urllib.request.urlopen(f"http://127.0.0.1:{config.port}/", timeout=60) as page:
        status = page.status
    with urllib.request.urlopen(f"http://127.0.0.1:{config.port}/sdapi/v1/samplers", timeout=60) as answer:
        samplers = [row["name"] for row in json.load(answer)]
    before = sorted(m for m in HEAVY if m in sys.modules)
    demo.ldm_ui.startup.submit()
    demo.ldm_ui.startup.wait(300)
    print("RESULT " + json.dumps({"status": status, "api_samplers": len(samplers), "heavy_before_load": before,
                      "loaded": getattr(engine.models.current, "family", None), "error": demo.ldm_ui.startup.error,
                      "torch_after_load": "torch" in sys.modules}), flush=True)
    demo.close()
    engine.shutdown()
""")


def test_the_page_and_the_api_answer_before_torch_is_imported_and_the_first_load_imports_it(tmp_path):
    from browser_support import free_port

    result = subprocess.run([sys.executable, "-c", SERVE_THEN_LOAD, str(free_port()), str(tmp_path / "outputs")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:])
    assert seen["status"] == 200 and seen["api_samplers"] > 5
    assert seen["heavy_before_load"] == [], "the page's path imported these; import them where they are used"
    assert seen["error"] is None and seen["loaded"] is not None and seen["torch_after_load"]


def test_every_registry_row_names_a_task_module_with_run():
    # rows name their modules (imported when the task first runs): a typo would only show at the first job
    for request_type, task in TASKS.items():
        assert callable(task.run), request_type
        assert task.run.__module__ == f"ldm_ui.engine.tasks.{task.module}"
