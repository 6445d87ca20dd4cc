"""AUTOMATIC1111's attention syntax: a prompt -> runs of (text, weight), with BREAK as a chunk boundary.

    (word) x1.1   ((word)) x1.21   [word] /1.1   (word:1.5) x1.5   \\( \\) \\[ \\] literal brackets

Brackets nest and may hold any span of words. What AUTOMATIC1111 does with odd input, this does too: a closing
bracket with nothing open is ordinary text, a bracket left open applies its weight to the end of the prompt, a
`:1.5)` with no `(` open is text. Nothing here raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROUND_MULTIPLIER = 1.1
SQUARE_MULTIPLIER = 1 / 1.1
BREAK = "BREAK"

_TOKENS = re.compile(r"""
    \\[()\[\]\\]             # an escaped bracket or backslash
  | \\                       # a lone backslash
  | \(  | \[                 # openers
  | :\s*([+-]?[.\d]+)\s*\)   # an explicit weight closing a round bracket
  | \)  | \]                 # closers
  | [^\\()\[\]:]+            # plain text
  | :
""", re.VERBOSE)
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class Run:
    """A stretch of prompt text with one weight; `is_break` marks a BREAK (its text and weight mean nothing)."""

    text: str
    weight: float = 1.0
    is_break: bool = False


def parse_attention(prompt: str) -> list[Run]:
    """The prompt as weighted runs, neighbours with equal weights merged (an empty prompt is one empty run)."""
    runs: list[list] = []  # [text, weight, is_break], mutable while brackets close
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            if not run[2]:
                run[1] *= factor

    for match in _TOKENS.finditer(prompt):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\"):
            runs.append([token[1:], 1.0, False])
        elif token == "(":
            round_open.append(len(runs))
        elif token == "[":
            square_open.append(len(runs))
        elif weight is not None and round_open and _is_number(weight):
            multiply_from(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply_from(round_open.pop(), ROUND_MULTIPLIER)
        elif token == "]" and square_open:
            multiply_from(square_open.pop(), SQUARE_MULTIPLIER)
        else:
            for index, part in enumerate(_BREAK_SPLIT.split(token)):
                if index:
                    runs.append([BREAK, -1.0, True])
                runs.append([part, 1.0, False])
    for start in reversed(round_open):  # brackets left open weigh everything after them
        multiply_from(start, ROUND_MULTIPLIER)
    for start in reversed(square_open):
        multiply_from(start, SQUARE_MULTIPLIER)
    return _merge(runs)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _merge(runs: list[list]) -> list[Run]:
    merged: list[Run] = []
    for text, weight, is_break in runs:
        if is_break:
            merged.append(Run(BREAK, -1.0, True))
        elif merged and not merged[-1].is_break and merged[-1].weight == weight:
            merged[-1] = Run(merged[-1].text + text, weight)
        else:
            merged.append(Run(text, weight))
    if not merged:
        merged.append(Run("", 1.0))
    return merged
