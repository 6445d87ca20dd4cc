"""AUTOMATIC1111's short file hash (the first 10 hex digits of the file's sha256), cached by path, size and mtime,
for checkpoints (ModelManager.file_hash) and VAE files, in one cache file."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def short_file_hash(path: Path, cache_path: Path) -> str:
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache = {}
    if cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except (OSError, json.JSONDecodeError):
            cache = {}
    if key not in cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()[:10]
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, cache_path)
    return cache[key]


def hash_cache_path(cache_dir: Path) -> Path:
    return cache_dir / "model-hashes.json"
