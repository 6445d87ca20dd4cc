"""Prompt editing and alternation: which text the model reads at each sampling step.

    [from:to:when]  `from` until step `when`, then `to`      [to:when]  nothing, then `to`
    [from::when]    `from`, then nothing                      [a|b|c]    a, b, c, a, ... one per step

`when` below 1 is a fraction of the steps, otherwise a step number (AUTOMATIC1111's documented rule). The result
follows AUTOMATIC1111's prompt_parser: a list of (end_step, text), steps counted from 1, and sampling step i
(from 0) reads the first entry with i <= end_step. Anything that is not well-formed editing syntax stays text,
for the attention parser to read (`[a:b]` is a literal, `[word]` is de-emphasis).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*\]")
_SPECIAL = set("\\[]():|")
MAX_NESTING = 64  # deeper brackets are read as text (and keep the recursion bounded)


@dataclass(frozen=True)
class Edit:
    before: tuple
    after: tuple
    when: float


@dataclass(frozen=True)
class Alternate:
    options: tuple


Node = str | Edit | Alternate


class _Parser:
    """Recursive descent with backtracking: a bracket that does not close as editing syntax is one text char.
    Results are memoized by position, so backtracking over many open brackets stays linear, not exponential."""

    def __init__(self, text: str):
        self.text = text
        self.memo: dict[tuple, tuple[list[Node], int]] = {}
        self.depth = 0

    def sequence(self, pos: int, stops: str) -> tuple[list[Node], int]:
        key = (pos, stops)
        if key not in self.memo:
            self.memo[key] = self._sequence(pos, stops)
        return self.memo[key]

    def _sequence(self, pos: int, stops: str) -> tuple[list[Node], int]:
        """Nodes from `pos` up to (not including) a char in `stops` or the end."""
        nodes: list[Node] = []
        text = self.text
        start = pos
        while pos < len(text) and text[pos] not in stops:
            if pos != start and (pos, stops) in self.memo:  # the rest was read before, from a failed bracket
                rest, end = self.memo[(pos, stops)]
                return nodes + rest, end
            char = text[pos]
            if char == "\\":
                nodes.append(text[pos:pos + 2])
                pos += 2
            elif char in "[(" and self.depth < MAX_NESTING:
                self.depth += 1
                node, end = self.square(pos) if char == "[" else self.round(pos)
                self.depth -= 1
                nodes.extend(node)
                pos = end
            elif char in _SPECIAL:  # a stray closer, ':' or '|' outside any bracket that gives it meaning
                nodes.append(char)
                pos += 1
            else:
                end = pos
                while end < len(text) and text[end] not in _SPECIAL:
                    end += 1
                nodes.append(text[pos:end])
                pos = end
        return nodes, pos

    def round(self, pos: int) -> tuple[list[Node], int]:
        """`( ... )` or `( ... : ... )`: the brackets stay text (the attention parser weighs them)."""
        inner, end = self.sequence(pos + 1, ")]|:")
        if end < len(self.text) and self.text[end] == ":":
            weight, end2 = self.sequence(end + 1, ")]|:")
            if end2 < len(self.text) and self.text[end2] == ")":
                return ["(", *inner, ":", *weight, ")"], end2 + 1
        elif end < len(self.text) and self.text[end] == ")":
            return ["(", *inner, ")"], end + 1
        return ["("], pos + 1

    def square(self, pos: int) -> tuple[list[Node], int]:
        text = self.text
        first, end = self.sequence(pos + 1, "]|:")
        if end >= len(text):
            return ["["], pos + 1
        if text[end] == "]":
            return ["[", *first, "]"], end + 1
        if text[end] == "|":
            options = [tuple(first)]
            while end < len(text) and text[end] == "|":
                option, end = self.sequence(end + 1, "]|:")
                options.append(tuple(option))
            if end < len(text) and text[end] == "]":
                return [Alternate(tuple(options))], end + 1
            return ["["], pos + 1
        # text[end] == ":": [to:when] or [from:to:when]
        number = _NUMBER.match(text, end + 1)
        if number:
            return [Edit((), tuple(first), float(number.group(1)))], number.end()
        second, end2 = self.sequence(end + 1, "]|:")
        if end2 < len(text) and text[end2] == ":":
            number = _NUMBER.match(text, end2 + 1)
            if number:
                return [Edit(tuple(first), tuple(second), float(number.group(1)))], number.end()
        return ["["], pos + 1


def parse_schedule_syntax(prompt: str) -> list[Node]:
    if ":" not in prompt and "|" not in prompt:  # no editing or alternation possible: the common case, fast
        return [prompt]
    nodes, _ = _Parser(prompt).sequence(0, "")
    return nodes


def _switch_steps(nodes, steps: int, found: set[int]) -> None:
    for node in nodes:
        if isinstance(node, Edit):
            when = int(node.when * steps) if node.when < 1 else int(node.when)
            when = min(steps, when)
            if when >= 1:
                found.add(when)
            _switch_steps(node.before, steps, found)
            _switch_steps(node.after, steps, found)
        elif isinstance(node, Alternate):
            found.update(range(1, steps + 1))
            for option in node.options:
                _switch_steps(option, steps, found)


def _text_at(nodes, step: int, steps: int) -> str:
    parts = []
    for node in nodes:
        if isinstance(node, str):
            parts.append(node)
        elif isinstance(node, Edit):
            when = min(steps, int(node.when * steps) if node.when < 1 else int(node.when))
            parts.append(_text_at(node.before if step <= when else node.after, step, steps))
        else:
            parts.append(_text_at(node.options[(step - 1) % len(node.options)], step, steps))
    return "".join(parts)


def prompt_schedule(prompt: str, steps: int) -> list[tuple[int, str]]:
    """[(end_step, text), ...]: `text` holds through step `end_step` (1-based); the last entry ends at `steps`."""
    nodes = parse_schedule_syntax(prompt)
    found = {steps}
    _switch_steps(nodes, steps, found)
    schedule: list[tuple[int, str]] = []
    for end in sorted(found):
        text = _text_at(nodes, end, steps)
        if schedule and schedule[-1][1] == text:  # consecutive equal texts are one entry
            schedule[-1] = (end, text)
        else:
            schedule.append((end, text))
    return schedule


def text_for_step(schedule: list[tuple[int, str]], step_index: int) -> str:
    """The text sampling step `step_index` (from 0) reads, by AUTOMATIC1111's rule."""
    for end, text in schedule:
        if step_index <= end:
            return text
    return schedule[-1][1]
