"""Textual-inversion embeddings: found in models/embeddings/ and every --embeddings-dir, used by name in a prompt.

Layouts AUTOMATIC1111 reads: `.safetensors` with `emb_params` (or any one tensor), SDXL's `clip_l` + `clip_g`,
and `.pt`/`.bin` with `string_to_param` or one tensor (diffusers' `{token: tensor}`). Pickle files are read only
by torch's weights-only unpickler, which builds tensors and plain containers and refuses every other class, so a
file that would run code on loading is skipped with a message; nothing is ever fully unpickled.

The name is the file name without its suffix (the first folder wins on a clash). The short hash is the first 12
hex digits of the file's sha256, as AUTOMATIC1111 writes it into `TI hashes`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ldm_ui.safe_paths import is_inside

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

EMBEDDING_SUFFIXES = (".safetensors", ".pt", ".bin")
MAX_EMBEDDING_BYTES = 50 * 1024 * 1024  # textual inversions are kilobytes; a bigger file is something else
MAX_EMBEDDING_VECTORS = 75  # one chunk of tokens


class EmbeddingError(ValueError):
    """A file in an embeddings folder that is not a usable embedding; the message names it and says why."""


@dataclass(frozen=True, eq=False)
class Embedding:
    name: str
    path: Path
    short_hash: str
    vectors: dict[int, torch.Tensor]  # token-embedding width -> [count, width]; SDXL files hold 768 and 1280

    @property
    def count(self) -> int:
        return next(iter(self.vectors.values())).shape[0]

    def fits(self, widths: list[int]) -> bool:
        """Usable on a model whose text encoders have these token-embedding widths."""
        return all(width in self.vectors for width in widths)


def _tensor(value, name: str, where: str) -> torch.Tensor:
    import torch  # here, not at the top: the page is built and served before torch is imported (app.py)

    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        raise EmbeddingError(f"{where}: {name!r} is not a float tensor")
    value = value.detach().to("cpu", torch.float32)
    if value.ndim == 1:
        value = value.unsqueeze(0)
    if value.ndim != 2 or not 1 <= value.shape[0] <= MAX_EMBEDDING_VECTORS:
        raise EmbeddingError(f"{where}: {name!r} has shape {tuple(value.shape)}; an embedding is 1 to "
                             f"{MAX_EMBEDDING_VECTORS} vectors")
    if not torch.isfinite(value).all():
        raise EmbeddingError(f"{where}: {name!r} holds NaN or infinite values")
    return value


def vectors_from_data(data, where: str) -> dict[int, torch.Tensor]:
    """The layouts AUTOMATIC1111 accepts -> {width: vectors}."""
    import torch

    if not isinstance(data, dict):
        raise EmbeddingError(f"{where}: not a textual-inversion embedding (the file holds {type(data).__name__})")
    if "clip_l" in data and "clip_g" in data:
        clip_l, clip_g = _tensor(data["clip_l"], "clip_l", where), _tensor(data["clip_g"], "clip_g", where)
        if clip_l.shape[0] != clip_g.shape[0]:
            raise EmbeddingError(f"{where}: clip_l has {clip_l.shape[0]} vectors but clip_g {clip_g.shape[0]}")
        return {clip_l.shape[1]: clip_l, clip_g.shape[1]: clip_g}
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if not isinstance(params, dict) or len(params) != 1:
            raise EmbeddingError(f"{where}: string_to_param must hold exactly one tensor")
        vectors = _tensor(next(iter(params.values())), "string_to_param", where)
    elif "emb_params" in data:
        vectors = _tensor(data["emb_params"], "emb_params", where)
    else:
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if len(tensors) != 1:
            raise EmbeddingError(f"{where}: not a textual-inversion embedding (expected emb_params, string_to_param, "
                                 f"clip_l + clip_g, or a single tensor; found {', '.join(map(str, data)) or 'nothing'})")
        (key, value), = tensors.items()
        vectors = _tensor(value, str(key), where)
    return {vectors.shape[1]: vectors}


def read_embedding(path: Path) -> Embedding:
    """Load one file safely; EmbeddingError names the file and the reason when it is not usable."""
    where = str(path)
    size = path.stat().st_size
    if size > MAX_EMBEDDING_BYTES:
        raise EmbeddingError(f"{where}: {size:,} bytes is too large for an embedding (limit "
                             f"{MAX_EMBEDDING_BYTES:,}); is it a model?")
    raw = path.read_bytes()
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load as load_safetensors

        try:
            data = load_safetensors(raw)
        except Exception as error:  # safetensors raises its own error types for every kind of damage
            raise EmbeddingError(f"{where}: not a readable .safetensors file ({error})") from error
    else:
        import torch

        try:
            data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise EmbeddingError(f"{where}: refused; this pickle needs more than tensors to load, which could run "
                                 f"code (only weights-only pickles are read; convert it to .safetensors)") from error
        except Exception as error:
            raise EmbeddingError(f"{where}: not a readable embedding file ({type(error).__name__}: {error})") from error
    vectors = vectors_from_data(data, where)
    return Embedding(path.stem, path, hashlib.sha256(raw).hexdigest()[:12], vectors)


@dataclass
class EmbeddingLibrary:
    """The embeddings in some folders, re-read when a file changes; `problems` lists files that were skipped.
    The UI (token counter, picker) and the engine's worker both scan, so a lock guards the cache."""

    folders: list[Path]
    problems: dict[str, str] = field(default_factory=dict)  # path -> message
    _cache: dict[str, tuple[tuple[int, int], Embedding | None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def scan(self) -> dict[str, Embedding]:
        with self._lock:
            return self._scan()

    def file_names(self) -> list[str]:
        """The names of the embedding files, without reading them (and without torch): what the prompt tools show
        until they first scan."""
        return list(dict.fromkeys(path.stem for path in self._files()))

    def _files(self):
        for folder in self.folders:
            folder = Path(folder)
            if not folder.is_dir():
                continue
            for path in sorted(folder.rglob("*")):
                if path.suffix.lower() in EMBEDDING_SUFFIXES and path.is_file() and is_inside(path, folder):
                    yield path

    def _scan(self) -> dict[str, Embedding]:
        found: dict[str, Embedding] = {}
        problems: dict[str, str] = {}
        seen: set[str] = set()
        for path in self._files():
            key = str(path)
            seen.add(key)
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            cached = self._cache.get(key)
            if cached is None or cached[0] != stamp:
                try:
                    embedding = read_embedding(path)
                except (EmbeddingError, OSError) as error:
                    embedding = None
                    problems[key] = str(error)
                    log.warning("skipped embedding %s", error)
                self._cache[key] = (stamp, embedding)
                cached = self._cache[key]
            elif cached[1] is None:
                problems[key] = self.problems.get(key, f"{path}: skipped")
            if cached[1] is not None:
                found.setdefault(cached[1].name, cached[1])
        for stale in set(self._cache) - seen:
            del self._cache[stale]
        self.problems = problems
        return found


def embedding_dirs(models_dir: Path, extra: list[Path] | tuple = ()) -> list[Path]:
    return [Path(models_dir) / "embeddings", *map(Path, extra)]


def describe(embedding: Embedding) -> str:
    widths = "+".join(str(w) for w in sorted(embedding.vectors))
    return f"{embedding.name} ({embedding.count} vector{'s' if embedding.count != 1 else ''}, width {widths})"
