"""Prompt styles in AUTOMATIC1111's styles.csv format: name, prompt, negative_prompt (a header row, CSV quoting).

A style's prompt with `{prompt}` wraps the user's prompt (the placeholder is replaced by it); without one it is
appended after a comma, as A1111 merges them. The same goes for the negative prompt. Applying several styles
applies them in the order picked.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

FIELDS = ("name", "prompt", "negative_prompt")
PLACEHOLDER = "{prompt}"


class StyleError(ValueError):
    """A style that cannot be saved or applied; the message names it."""


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


@dataclass
class StyleFile:
    styles: dict[str, Style]
    skipped: list[str]  # one message per row that could not be read, naming its line


def merge(style_text: str, prompt: str) -> str:
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def apply_styles(prompt: str, negative_prompt: str, styles: list[Style]) -> tuple[str, str]:
    for style in styles:
        prompt = merge(style.prompt, prompt)
        negative_prompt = merge(style.negative_prompt, negative_prompt)
    return prompt, negative_prompt


def parse_styles(text: str, source: str = "styles.csv") -> StyleFile:
    """Rows with a name become styles; a row without one, or with more columns than the header, is skipped with a
    message naming its line. Columns beyond name/prompt/negative_prompt in the header are ignored."""
    reader = csv.reader(io.StringIO(text))
    styles: dict[str, Style] = {}
    skipped: list[str] = []
    header: list[str] | None = None
    try:
        for row in reader:
            line = reader.line_num
            if not row or not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
                if "name" not in header:
                    return StyleFile({}, [f"{source} line {line}: the header must name the columns "
                                          f"{', '.join(FIELDS)}; got {', '.join(row)}"])
                continue
            if len(row) > len(header):
                skipped.append(f"{source} line {line}: {len(row)} fields but the header has {len(header)} "
                               "(an unquoted comma?); row skipped")
                continue
            cells = dict(zip(header, row))
            name = cells.get("name", "").strip()
            if not name:
                skipped.append(f"{source} line {line}: no style name; row skipped")
                continue
            styles[name] = Style(name, cells.get("prompt", ""), cells.get("negative_prompt", ""))
    except csv.Error as error:
        skipped.append(f"{source} line {reader.line_num}: {error}; the rest of the file was skipped")
    for message in skipped:
        log.warning(message)
    return StyleFile(styles, skipped)


def format_styles(styles: list[Style]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for style in styles:
        writer.writerow((style.name, style.prompt, style.negative_prompt))
    return out.getvalue()


def load_styles(path: Path) -> StyleFile:
    if not path.is_file():
        return StyleFile({}, [])
    return parse_styles(path.read_text(encoding="utf-8-sig"), path.name)


def save_style(path: Path, style: Style) -> StyleFile:
    """Add or replace `style` in the file (written atomically, the other rows kept as they were read; the previous
    file is kept as <name>.bak, so rows that could not be read are not lost)."""
    if not style.name.strip():
        raise StyleError("a style needs a name")
    if "\x00" in style.name + style.prompt + style.negative_prompt:
        raise StyleError("a style cannot contain a NUL character")
    current = load_styles(path)
    styles = dict(current.styles)
    styles[style.name.strip()] = Style(style.name.strip(), style.prompt, style.negative_prompt)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():  # as A1111 does: the file as it was stays beside it (rows that could not be read included)
        shutil.copy2(path, path.with_name(path.name + ".bak"))
    fd, tmp = tempfile.mkstemp(prefix=".styles-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(format_styles(list(styles.values())))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return load_styles(path)
