"""The prompt language's grammar: attention runs and schedules, as AUTOMATIC1111 reads them (no model needed)."""

from __future__ import annotations

import pytest

from ldm_ui.prompts.attention import parse_attention
from ldm_ui.prompts.schedule import prompt_schedule, text_for_step

B = ("BREAK", -1.0)
UP, DOWN = 1.1, 1 / 1.1

ATTENTION = [
    ("a cat", [("a cat", 1.0)]),
    ("", [("", 1.0)]),
    ("(cat)", [("cat", UP)]),
    ("((cat))", [("cat", UP * UP)]),
    ("(((cat)))", [("cat", UP ** 3)]),
    ("[cat]", [("cat", DOWN)]),
    ("[[cat]]", [("cat", DOWN * DOWN)]),
    ("(cat:1.5)", [("cat", 1.5)]),
    ("(cat:0.25)", [("cat", 0.25)]),
    ("(cat: 1.5 )", [("cat", 1.5)]),
    ("(cat:-1)", [("cat", -1.0)]),
    ("(cat:1.0)", [("cat", 1.0)]),
    ("a (red:1.0) cat", [("a red cat", 1.0)]),
    ("a (red) cat", [("a ", 1.0), ("red", UP), (" cat", 1.0)]),
    ("a (big red:1.3) cat", [("a ", 1.0), ("big red", 1.3), (" cat", 1.0)]),
    ("(a (b) c:2)", [("a ", 2.0), ("b", 2.0 * UP), (" c", 2.0)]),
    ("([a]:2)", [("a", 2.0 * DOWN)]),
    ("[a (b)]", [("a ", DOWN), ("b", DOWN * UP)]),
    (r"\(cat\)", [("(cat)", 1.0)]),
    (r"\[cat\]", [("[cat]", 1.0)]),
    (r"a \\ b", [("a \\ b", 1.0)]),
    (r"(\(x\):1.2)", [("(x)", 1.2)]),
    ("()", [("", 1.0)]),
    ("[]", [("", 1.0)]),
    ("(cat", [("cat", UP)]),  # left open: weighs to the end
    ("[cat", [("cat", DOWN)]),
    ("cat)", [("cat)", 1.0)]),  # nothing open: text
    ("cat]", [("cat]", 1.0)]),
    ("a:1.2) b", [("a:1.2) b", 1.0)]),
    ("time: noon", [("time: noon", 1.0)]),
    ("(a:b)", [("a:b", UP)]),  # not a number: the bracket is a plain (x1.1) one
    ("a BREAK b", [("a", 1.0), B, ("b", 1.0)]),
    ("a BREAK", [("a", 1.0), B, ("", 1.0)]),
    ("(a BREAK b)", [("a", UP), B, ("b", UP)]),
    ("BREAKFAST", [("BREAKFAST", 1.0)]),
    ("a break b", [("a break b", 1.0)]),
]


@pytest.mark.parametrize("prompt, expected", ATTENTION, ids=[p or "<empty>" for p, _ in ATTENTION])
def test_attention_runs(prompt, expected):
    runs = parse_attention(prompt)
    assert [r.text for r in runs] == [text for text, _ in expected]
    assert [r.weight for r in runs] == pytest.approx([weight for _, weight in expected])
    assert [r.is_break for r in runs] == [text == "BREAK" and weight == -1 for text, weight in expected]


SCHEDULES = [
    ("a cat", 20, [(20, "a cat")]),
    ("a [dog:cat:10] here", 20, [(10, "a dog here"), (20, "a cat here")]),
    ("[dog:cat:0.25]", 20, [(5, "dog"), (20, "cat")]),
    ("[dog:cat:0.5]", 10, [(5, "dog"), (10, "cat")]),
    ("[dog:cat:0]", 20, [(20, "cat")]),
    ("[dog:cat:99]", 20, [(20, "dog")]),
    ("[cat:5]", 20, [(5, ""), (20, "cat")]),
    ("[dog::5]", 20, [(5, "dog"), (20, "")]),
    ("[dog: cat :5]", 20, [(5, "dog"), (20, " cat ")]),
    ("[dog:cat: 5 ]", 20, [(5, "dog"), (20, "cat")]),
    ("[a|b]", 4, [(1, "a"), (2, "b"), (3, "a"), (4, "b")]),
    ("[a|b|c]", 3, [(1, "a"), (2, "b"), (3, "c")]),
    ("[a|]", 2, [(1, "a"), (2, "")]),
    ("([dog:cat:5]:1.2)", 20, [(5, "(dog:1.2)"), (20, "(cat:1.2)")]),
    ("[[a|b]:c:3]", 20, [(1, "a"), (2, "b"), (3, "a"), (20, "c")]),
    ("[a:b]", 20, [(20, "[a:b]")]),  # not editing syntax: text for the attention parser
    ("[a]", 20, [(20, "[a]")]),
    ("[a:b:c]", 20, [(20, "[a:b:c]")]),
    ("[unclosed:x:5", 20, [(20, "[unclosed:x:5")]),
    ("a | b", 20, [(20, "a | b")]),
    (r"\[a:b:5\]", 20, [(20, r"\[a:b:5\]")]),
    ("[a:b:5] [c:d:10]", 20, [(5, "a c"), (10, "b c"), (20, "b d")]),
]


@pytest.mark.parametrize("prompt, steps, expected", SCHEDULES, ids=[p for p, _, _ in SCHEDULES])
def test_schedules(prompt, steps, expected):
    assert prompt_schedule(prompt, steps) == expected


def test_step_selection_follows_automatic1111():
    """Sampling step i (from 0) reads the first entry whose end step is >= i, as AUTOMATIC1111 does."""
    schedule = prompt_schedule("[dog:cat:10]", 20)
    assert [text_for_step(schedule, i) for i in range(20)] == ["dog"] * 11 + ["cat"] * 9
    alternate = prompt_schedule("[a|b]", 6)
    assert [text_for_step(alternate, i) for i in range(6)] == ["a", "a", "b", "a", "b", "a"]


def test_odd_input_never_raises():
    for prompt in ["((((", "))))", "[[[[", "]]]]", "(:", ":)", "[:", "[:]", "[::]", "[|]", "(x:1.2.3)", "\\", "[a:b:-1]",
                   "(x:.)", "[" * 500 + "a", "a" + ")" * 500, "BREAK BREAK", "[a:b:1e3]"]:
        for _, text in prompt_schedule(prompt, 20):
            assert parse_attention(text)
