"""Start-up: seconds from `python app.py` to the page answering, and to the first model being loaded.

Each run launches the app as a child process on a free port with the built-in model; the page time is when an
HTTP GET of / first answers 200, the model time is when the app logs "loaded <model>". Median of --runs (5).
Target (issue 14): the page within 5 s on the 2-core CI machine. Run: python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def one_start(timeout_s: float = 120.0) -> tuple[float, float]:
    port = free_port()
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port),
                              "--outputs-dir", tempfile.mkdtemp(prefix="startup-")],
                             cwd=ROOT, env={**__import__("os").environ, **env}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    loaded: queue.Queue = queue.Queue()

    def watch_log() -> None:
        for line in child.stderr:
            if " loaded " in line:
                loaded.put(time.perf_counter())
        loaded.put(None)

    threading.Thread(target=watch_log, daemon=True).start()
    try:
        page_s = None
        while page_s is None:  # a server start has no event another process can await: ask until it answers
            if page_answers(f"http://127.0.0.1:{port}/"):
                page_s = time.perf_counter() - started
            elif child.poll() is not None or time.perf_counter() - started > timeout_s:
                raise SystemExit(f"the app did not answer (exit code {child.poll()})")
            else:
                time.sleep(0.05)
        at = loaded.get(timeout=timeout_s)
        if at is None:
            raise SystemExit("the app exited without logging the model load")
        return page_s, at - started
    finally:
        child.terminate()
        child.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    pages, models = [], []
    for _ in range(args.runs):
        page_s, model_s = one_start()
        pages.append(page_s)
        models.append(model_s)
        print(f"page {page_s:5.2f} s   model loaded {model_s:5.2f} s")
    print(f"median: page answers after {statistics.median(pages):.2f} s (target <= 5), "
          f"model ready after {statistics.median(models):.2f} s")


if __name__ == "__main__":
    main()
