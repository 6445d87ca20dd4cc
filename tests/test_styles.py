"""Prompt styles in AUTOMATIC1111's styles.csv format: reading, merging, saving, and the shipped styles."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldm_ui.config import PROJECT_ROOT, AppConfig, config_from_args
from ldm_ui.styles import Style, StyleError, apply_styles, load_styles, parse_styles, save_style

A1111_FILE = '''name,prompt,negative_prompt
"Cinematic, moody","cinematic still of {prompt}, ""moody"" lighting, film grain","cartoon, ""anime"", 3d"
Plain suffix,"highly detailed, sharp focus",
"Multi
line",first line {prompt},
'''


def test_an_automatic1111_file_reads_with_quotes_commas_newlines_and_placeholders():
    styles = parse_styles(A1111_FILE).styles
    assert list(styles) == ["Cinematic, moody", "Plain suffix", "Multi\nline"]
    moody = styles["Cinematic, moody"]
    assert moody.prompt == 'cinematic still of {prompt}, "moody" lighting, film grain'
    assert moody.negative_prompt == 'cartoon, "anime", 3d'


def test_saving_round_trips_every_style(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(A1111_FILE)
    added = Style("New, with \"quotes\"", "a {prompt}, with a comma", 'no "this", or that')
    saved = save_style(path, added)
    assert saved.styles == {**parse_styles(A1111_FILE).styles, added.name: added}
    assert load_styles(path).styles == saved.styles and saved.skipped == []
    assert (tmp_path / "styles.csv.bak").read_text() == A1111_FILE  # the file as it was, kept as A1111 keeps it
    replaced = save_style(path, Style("Plain suffix", "changed", ""))
    assert replaced.styles["Plain suffix"].prompt == "changed" and len(replaced.styles) == 4


def test_styles_merge_as_automatic1111_merges_them():
    wrap = Style("wrap", "photo of {prompt}, 35mm", "{prompt}, blurry")
    tail = Style("tail", "highly detailed", "lowres")
    assert apply_styles("a cat", "ugly", [wrap]) == ("photo of a cat, 35mm", "ugly, blurry")
    assert apply_styles("a cat", "", [tail]) == ("a cat, highly detailed", "lowres")
    assert apply_styles("", "", [tail]) == ("highly detailed", "lowres")
    # a placeholder is replaced as it is, as in A1111: an empty negative prompt leaves the leading ", "
    assert apply_styles("a cat", "", [wrap, tail]) == ("photo of a cat, 35mm, highly detailed", ", blurry, lowres")


def test_a_malformed_row_is_skipped_with_its_line_named():
    text = "name,prompt,negative_prompt\ngood,a {prompt},\nbad,one,two,three\n,no name,\nlast,x,\n"
    read = parse_styles(text, "styles.csv")
    assert list(read.styles) == ["good", "last"]
    assert read.skipped == [
        "styles.csv line 3: 4 fields but the header has 3 (an unquoted comma?); row skipped",
        "styles.csv line 4: no style name; row skipped",
    ]


def test_a_file_without_a_header_says_what_the_header_must_be():
    read = parse_styles("good,a {prompt},\n")
    assert read.styles == {} and "header must name the columns name, prompt, negative_prompt" in read.skipped[0]


def test_a_style_needs_a_name(tmp_path):
    with pytest.raises(StyleError, match="needs a name"):
        save_style(tmp_path / "styles.csv", Style("  ", "x"))


def test_styles_file_flag():
    assert config_from_args(["--styles-file", "/a/styles.csv"]).styles_file == Path("/a/styles.csv")
    assert AppConfig().styles_file == PROJECT_ROOT / "styles.csv"


def test_the_shipped_styles_draw_what_they_say_on_the_demo_model(tmp_path):
    from ldm_ui.demo.judge import judge
    from ldm_ui.engine.engine import Engine
    from ldm_ui.requests import Txt2ImgRequest

    shipped = load_styles(PROJECT_ROOT / "styles.csv")
    assert shipped.skipped == [] and len(shipped.styles) >= 3
    cases = [("Night (white on black)", "circle", ("white", "circle", "black")),
             ("Blueprint", "square", ("white", "square", "blue")),
             ("Traffic light (type a colour)", "red", ("red", "circle", "black"))]
    engine = Engine(AppConfig(outputs_dir=tmp_path / "outputs", cache_dir=tmp_path / "cache",
                              preview_method="off")).start()
    try:
        for name, typed, (color, shape, background) in cases:
            prompt, negative = apply_styles(typed, "", [shipped.styles[name]])
            hits = 0
            for seed in (1, 2, 3):
                [output] = engine.generate(Txt2ImgRequest(prompt=prompt, negative_prompt=negative, seed=seed)).outputs
                verdict = judge(output.image)
                hits += (verdict.color, verdict.shape, verdict.background) == (color, shape, background)
            assert hits >= 2, f"style {name!r} with {typed!r}: {prompt!r} drawn right {hits}/3 times"
    finally:
        engine.shutdown()
