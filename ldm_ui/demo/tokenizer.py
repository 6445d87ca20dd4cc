"""A CLIP tokenizer for the demo model, built by the project itself (no hub download).

It is byte-level BPE in CLIP's file format: ``vocab.json`` and ``merges.txt``, word ends marked ``</w>``,
``<|startoftext|>`` / ``<|endoftext|>`` specials. The merges are learned here from the demo captions, so
every caption word is one token; the vocabulary keeps all 256 byte symbols (with and without ``</w>``),
so any other text still tokenizes, into bytes.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from ldm_ui.demo import data

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 16  # "a purple triangle on a yellow background" is 9 tokens with BOS/EOS


def byte_symbols() -> list[str]:
    """GPT-2/CLIP's printable stand-in for each byte 0..255 (so BPE never sees whitespace or control bytes)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def caption_words() -> list[str]:
    return sorted({word for combo in data.combinations() for word in data.caption(*combo).split()})


def learn_merges(words: list[str]) -> list[tuple[str, str]]:
    """Plain BPE: merge the most frequent adjacent pair (ties broken alphabetically) until every word is one token."""
    pieces = {word: [*word[:-1], word[-1] + "</w>"] for word in words}
    merges = []
    while True:
        pairs = Counter(pair for split in pieces.values() for pair in zip(split, split[1:]))
        if not pairs:
            return merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        for word, split in pieces.items():
            merged, i = [], 0
            while i < len(split):
                if i + 1 < len(split) and (split[i], split[i + 1]) == best:
                    merged.append(split[i] + split[i + 1])
                    i += 2
                else:
                    merged.append(split[i])
                    i += 1
            pieces[word] = merged


def write_tokenizer_files(directory: str | Path) -> Path:
    """Write ``vocab.json`` and ``merges.txt`` in CLIP's format into ``directory``; returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merges = learn_merges(caption_words())
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(pair) for pair in merges] + [BOS, EOS]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def build_tokenizer(directory: str | Path):
    """A ``transformers.CLIPTokenizer`` over freshly written files; pad with EOS as Stable Diffusion does."""
    from transformers import CLIPTokenizer

    directory = write_tokenizer_files(directory)
    return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"),
                         model_max_length=MAX_LENGTH, pad_token=EOS)
