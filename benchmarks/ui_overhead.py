"""UI overhead: one job through the Gradio API (gradio_client, as a browser or script sees it) vs the bare engine.

The built-in demo-shapes model, 150 steps, Euler, one 64x64 image. The app runs as `python app.py` in a child
process; this process is the client. Three paths alternate each round: the bare engine in this process
(engine.generate, previews off, then approx previews every step), the UI with previews off, and the UI with approx
previews every step.
Prints the medians and the ratios: UI previews-every-step / UI previews-off (target <= 1.10) and UI / engine.
Run: python benchmarks/ui_overhead.py [--rounds 3] [--steps 150]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(ROOT))

MODEL = "demo-shapes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(outputs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    child = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--model", MODEL,
                              "--outputs-dir", str(outputs), "--disable-extensions"],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return child, f"http://127.0.0.1:{port}/"


def connect(url: str, child: subprocess.Popen, timeout_s: float = 180.0):
    from gradio_client import Client

    deadline = time.monotonic() + timeout_s
    while True:  # the server's start-up has no event this process can await: retry the connection
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - not listening yet
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the app did not start (exit code {child.poll()})")
            time.sleep(0.5)


def ui_job(client, steps: int, preview: str) -> float:
    start = time.perf_counter()
    result = client.predict(prompt="a red circle on a blue background", sampler="Euler", steps=steps, seed=1,
                            model=MODEL, preview_method=preview, preview_every=1, api_name="/txt2img")
    elapsed = time.perf_counter() - start
    if not result[2]:
        raise SystemExit(f"the UI job made no image; status: {result[1]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import Txt2ImgRequest

    outputs = Path(tempfile.mkdtemp(prefix="ui-overhead-"))
    child, url = start_app(outputs / "app")
    try:
        engine = Engine(AppConfig(default_model=MODEL, outputs_dir=outputs / "engine")).start()
        engine.switch_model(MODEL)
        request = Txt2ImgRequest(prompt="a red circle on a blue background", model=MODEL, sampler="Euler",
                                 steps=args.steps, seed=1, preview_method="off")
        client = connect(url, child)
        ui_job(client, 2, "off")  # warm-up: the first job pays the pipeline's first-call costs
        engine.generate(request)
        with_previews = request.with_changes(preview_method="approx", preview_every_n_steps=1)
        times: dict[str, list[float]] = {"engine": [], "engine previews every step": [], "ui previews off": [],
                                         "ui previews every step": []}
        for _ in range(args.rounds):
            for name, job in (("engine", request), ("engine previews every step", with_previews)):
                start = time.perf_counter()
                engine.generate(job)
                times[name].append(time.perf_counter() - start)
            times["ui previews off"].append(ui_job(client, args.steps, "off"))
            times["ui previews every step"].append(ui_job(client, args.steps, "approx"))
        engine.shutdown()
    finally:
        child.terminate()
        child.wait(30)
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, value in median.items():
        print(f"{name:24s} {value:6.2f} s  (runs: {', '.join(f'{v:.2f}' for v in times[name])})")
    print(f"ratio previews every step / off: {median['ui previews every step'] / median['ui previews off']:.2f}x "
          "(target <= 1.10)")
    print(f"ratio ui previews off / engine:  {median['ui previews off'] / median['engine']:.2f}x")
    print(f"ratio ui previews every step / engine: {median['ui previews every step'] / median['engine']:.2f}x")
    print(f"ratio ui previews every step / engine previews every step: "
          f"{median['ui previews every step'] / median['engine previews every step']:.2f}x")


if __name__ == "__main__":
    main()
