"""What /sdapi/v1/txt2img costs on top of the engine: the same 20-step job on the built-in model, both ways.

Starts `app.py --api` on loopback in its own process (as a client meets it), then alternates: a client-side
timed POST to /sdapi/v1/txt2img (JSON in, base64 PNG with its infotext out, over a kept-alive connection) and
engine.generate() of the identical request on an engine in this process. Prints the medians and the API/engine ratio
(target <= 1.10). Neither side saves to outputs/ (the API's default save_images=false).
Run: python benchmarks/api_overhead.py [--runs 15] [--steps 20] [--size 64]
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

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()

    from ldm_ui.api.schemas import Txt2ImgBody
    from ldm_ui.api.translate import txt2img_request
    from ldm_ui.config import AppConfig
    from ldm_ui.engine.engine import Engine

    work = Path(tempfile.mkdtemp())
    port = free_port()
    # the server in its own process, as an AUTOMATIC1111 client meets it
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--api", "--port", str(port),
                               "--outputs-dir", str(work / "server-outputs")], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    engine = Engine(AppConfig(outputs_dir=work / "outputs", cache_dir=work / "cache")).start()
    engine.switch_model("demo-shapes")
    body = {"prompt": "a red circle on a blue background", "seed": 1, "steps": args.steps, "width": args.size,
            "height": args.size, "sampler_name": "Euler a", "cfg_scale": 7}
    request = txt2img_request(Txt2ImgBody(**body), engine).request  # exactly what the route submits
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/sdapi/v1", timeout=600) as client:
            wait_until_serving(client, server)

            def through_api() -> float:
                began = time.perf_counter()
                response = client.post("/txt2img", json=body)
                response.raise_for_status()
                return time.perf_counter() - began

            def through_engine() -> float:
                began = time.perf_counter()
                engine.generate(request)
                return time.perf_counter() - began

            through_api(), through_engine()  # warm-up: connection, first-call caches
            api_times, engine_times = [], []
            for _ in range(args.runs):  # alternated, so drifts in the machine's speed hit both alike
                api_times.append(through_api())
                engine_times.append(through_engine())
    finally:
        server.terminate()
        server.wait(60)
        engine.shutdown()
    api_s, engine_s = statistics.median(api_times), statistics.median(engine_times)
    ratio = api_s / engine_s
    print(f"{args.steps}-step {args.size}x{args.size} txt2img on demo-shapes, median of {args.runs} alternated runs:")
    print(f"  engine.generate() in this process:   {engine_s:.3f} s")
    print(f"  POST /sdapi/v1/txt2img to app.py --api: {api_s:.3f} s (client side: JSON, queue, base64 PNG)")
    print(f"  API / engine ratio: {ratio:.3f}  (target <= {TARGET_RATIO}: {'met' if ratio <= TARGET_RATIO else 'missed'})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(client, server, timeout_s: float = 300) -> None:
    """Poll until the app answers (a benchmark may poll: nothing else tells another process's readiness)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"app.py --api exited with {server.returncode}")
        try:
            if client.get("/options").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("app.py --api did not start serving in time")


if __name__ == "__main__":
    main()
