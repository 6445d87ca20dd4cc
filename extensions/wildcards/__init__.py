"""Wildcards: `__color__` in a prompt becomes one line of wildcards/color.txt, picked from the image's seed.

The same seed always picks the same lines, so an image (and its infotext, which records the picked words)
can be reproduced. A wildcard name is looked up only inside this extension's wildcards/ folder; names with
`..`, absolute paths or NUL are refused. Lines may themselves contain wildcards (up to 8 levels deep).
"""

from __future__ import annotations

import random
import re

from ldm_ui.extensions import ExtensionApi

TOKEN = re.compile(r"__([^_\s][^\s]*?)__")
MAX_DEPTH = 8


def register(api: ExtensionApi) -> None:
    folder = api.folder / "wildcards"

    def choices(name: str) -> list[str]:
        try:
            path = api.resolve_inside(folder, name, (".txt",), kind="wildcard")
        except api.UnsafeNameError as error:
            available = sorted(p.stem for p in folder.glob("*.txt"))
            raise api.RequestError(f"{error}; wildcards available: {', '.join(available) or 'none'}") from None
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
        lines = [line for line in lines if line and not line.startswith("#")]
        if not lines:
            raise api.RequestError(f"wildcard file {path.name} has no lines to pick from")
        return lines

    def expand(prompt: str, seed: int) -> str:
        counts: dict[str, int] = {}

        def pick(match: re.Match) -> str:
            name = match[1]
            counts[name] = counts.get(name, 0) + 1
            # a string seed is hashed deterministically by random.Random (not by hash())
            rng = random.Random(f"{seed}|{name}|{counts[name]}")
            return rng.choice(choices(name))

        for _ in range(MAX_DEPTH):
            expanded = TOKEN.sub(pick, prompt)
            if expanded == prompt:
                break
            prompt = expanded
        return prompt

    api.add_prompt_transform(expand)
