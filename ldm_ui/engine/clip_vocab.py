"""The CLIP BPE tokenizer every Stable Diffusion text encoder uses, built offline from a file a package ships.

OpenAI's CLIP and OpenCLIP publish one byte-level BPE table (bpe_simple_vocab_16e6.txt.gz). The open_clip_torch
package carries it, so no hub download is needed: the 49,408-token vocab.json and merges.txt are derived from it
once into the cache folder, in the order the published tokenizer uses (byte symbols, byte symbols + '</w>', one
token per merge, then the two special tokens).
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
from pathlib import Path

from ldm_ui.engine.model_types import ModelError

CLIP_VOCAB_SIZE = 49408
_MERGE_COUNT = CLIP_VOCAB_SIZE - 2 * 256 - 2  # 48,894 merges after the 512 byte symbols, before 2 specials
_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
_SOURCE_PACKAGE = "open_clip"  # from the open_clip_torch distribution
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")


def bpe_source() -> Path:
    """Where the installed open_clip_torch keeps the BPE table (found without importing the package)."""
    spec = importlib.util.find_spec(_SOURCE_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        candidate = Path(folder) / _BPE_FILE
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"the CLIP tokenizer table {_BPE_FILE} was not found: install the open_clip_torch package "
        "(pip install -r requirements.txt); single-file checkpoints need it to build their tokenizer offline"
    )


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: printable Latin-1 bytes stand for themselves, the rest map above U+0100."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def clip_vocab_files(cache_dir: Path) -> tuple[Path, Path]:
    """vocab.json and merges.txt of the CLIP tokenizer, written into cache_dir/clip-bpe/ on first use."""
    folder = Path(cache_dir) / "clip-bpe"
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    if vocab_path.is_file() and merges_path.is_file():
        return vocab_path, merges_path
    lines = gzip.decompress(bpe_source().read_bytes()).decode("utf-8").split("\n")
    merges = lines[1:1 + _MERGE_COUNT]  # line 0 is a version comment
    if len(merges) != _MERGE_COUNT or not all(len(m.split(" ")) == 2 for m in merges):
        raise ModelError(
            f"{bpe_source()} does not hold the {_MERGE_COUNT:,} CLIP merges it should; reinstall open_clip_torch")
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + [m.replace(" ", "") for m in merges] + list(SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ModelError(f"building the CLIP vocabulary gave {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(merges_path, "#version: 0.2\n" + "\n".join(merges) + "\n")
    _write_atomically(vocab_path, json.dumps(vocab, ensure_ascii=False))
    return vocab_path, merges_path


def save_clip_tokenizer(folder: Path, cache_dir: Path, pad_token: str, model_max_length: int = 77) -> None:
    """A transformers CLIPTokenizer saved into `folder`, as a diffusers pipeline folder's tokenizer/ expects."""
    from transformers import CLIPTokenizer

    vocab_path, merges_path = clip_vocab_files(cache_dir)
    tokenizer = CLIPTokenizer(str(vocab_path), str(merges_path), pad_token=pad_token, model_max_length=model_max_length)
    tokenizer.save_pretrained(str(folder))


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
