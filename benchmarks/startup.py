"""Start-up: seconds from `python app.py` to the first answer, to the app's page, and to the model being loaded.

Each run launches the app as a child process on a free port with the built-in model. "first answer" is when an
HTTP GET of / first gets any answer (the "ldm-ui is starting…" page, 503, ldm_ui/starting_page.py); "app page" is
when it first answers 200 (Gradio's page with the tabs); "model" is when the app logs "loaded <model>". Median of
--runs (5). Target (issue 14): the app's page within 5 s on the 2-core CI machine (the starting page is only a
"please wait"). Run: python benchmarks/startup.py
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
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def page_status(url: str) -> int | None:
    """The HTTP status of GET url, None while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as error:  # the starting page answers 503
        return error.code
    except OSError:
        return None


def one_start(timeout_s: float = 120.0) -> tuple[float, float, float]:
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
        first_s = page_s = None
        while page_s is None:  # a server start has no event another process can await: ask until it answers
            status = page_status(f"http://127.0.0.1:{port}/")
            now = time.perf_counter() - started
            if status is not None and first_s is None:
                first_s = now
            if status == 200:
                page_s = now
            elif child.poll() is not None or now > timeout_s:
                raise SystemExit(f"the app did not answer (exit code {child.poll()})")
            else:
                time.sleep(0.05)
        at = loaded.get(timeout=timeout_s)
        if at is None:
            raise SystemExit("the app exited without logging the model load")
        return first_s, page_s, at - started
    finally:
        child.terminate()
        child.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    firsts, pages, models = [], [], []
    for _ in range(args.runs):
        first_s, page_s, model_s = one_start()
        firsts.append(first_s)
        pages.append(page_s)
        models.append(model_s)
        print(f"first answer {first_s:5.2f} s   app page {page_s:5.2f} s   model loaded {model_s:5.2f} s")
    print(f"median: first answer (starting page) after {statistics.median(firsts):.2f} s, "
          f"app page after {statistics.median(pages):.2f} s (target <= 5), "
          f"model ready after {statistics.median(models):.2f} s")


if __name__ == "__main__":
    main()
