"""How fast the History tab pages through a big outputs folder (issue 19: < 300 ms for 1,000 files).

Makes N small PNGs with infotexts in a temporary outputs folder, then times page 1, a middle page and the last
page (listing only), one user's first page with logins on (an owner lookup per file), and a prompt search, cold
(first) and warm (the prompts read once are kept). The baseline
in the same run: a bare os.walk over the same folder, which any listing must pay.

Run: python benchmarks/history_paging.py [--files 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_S = 0.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image, PngImagePlugin

    from ldm_ui.history import History

    root = Path(tempfile.mkdtemp()) / "outputs"
    for i in range(args.files):
        folder = root / ("txt2img", "img2img", "inpaint")[i % 3] / f"2026-11-{1 + i % 28:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", f"a {'red' if i % 2 else 'blue'} circle number {i}\nSteps: 20, Seed: {i}")
        Image.new("RGB", (64, 64), (i % 255, 0, 0)).save(folder / f"{i:05d}-{i}.png", pnginfo=info)

    def timed(action) -> float:
        times = []
        for _ in range(args.runs):
            began = time.perf_counter()
            action()
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    history = History(root)
    walk = timed(lambda: sum(len(names) for _, _, names in os.walk(root)))
    pages = history.page(1).pages
    rows = [("page 1", timed(lambda: history.page(1))), ("middle page", timed(lambda: history.page(pages // 2))),
            ("last page", timed(lambda: history.page(pages)))]
    # logins on: half the files are alice's (recorded as the engine records them); her page asks the owner of each
    from ldm_ui.ownership import OutputOwners

    owners = OutputOwners()
    for _, path in history.files()[::2]:
        owners.record("alice", path)
    rows.append(("alice's page 1", timed(lambda: history.page(1, visible=owners.visible_to("alice")))))
    began = time.perf_counter()
    History(root).page(1, search="number 99")
    rows.append(("search, cold", time.perf_counter() - began))
    rows.append(("search, warm", timed(lambda: history.page(1, search="number 99"))))
    print(f"{args.files} files; bare os.walk {walk * 1000:.1f} ms (baseline)")
    for label, seconds in rows:
        print(f"  {label:<14} {seconds * 1000:7.1f} ms  = {seconds / walk:5.1f}x the walk  "
              f"({'within' if seconds < TARGET_S else 'OVER'} the {TARGET_S * 1000:.0f} ms target)")


if __name__ == "__main__":
    main()
