"""Untrusted checkpoint files: validate a .safetensors header before anything loads it; turn an opted-in pickle
checkpoint into a .safetensors file with torch.load(weights_only=True), so one loading path serves both."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from ldm_ui.engine.model_types import ModelError

# bytes per element of every byte-aligned dtype the safetensors format defines
SAFETENSORS_DTYPE_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
# the safetensors library refuses headers above 100 MB; a real SDXL header is about 200 KB
MAX_HEADER_BYTES = 100_000_000
MAX_TENSOR_RANK = 8


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


def read_safetensors_header(path: Path) -> dict[str, TensorInfo]:
    """Tensor names, dtypes and shapes from the header, after checking that the file can hold what it promises.

    Reads only the header, never the tensors, so it is cheap on a 7 GB file.
    """
    path = Path(path)
    try:
        file_size = path.stat().st_size
        with open(path, "rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ModelError(f"{path.name} is not a valid .safetensors file: it is only {file_size} bytes long")
            (header_size,) = struct.unpack("<Q", prefix)
            if header_size == 0 or header_size > MAX_HEADER_BYTES:
                raise ModelError(
                    f"{path.name} is not a valid .safetensors file: its header claims {header_size:,} bytes "
                    f"(allowed: 1 to {MAX_HEADER_BYTES:,}); the file is corrupted or of another format"
                )
            if 8 + header_size > file_size:
                raise ModelError(
                    f"{path.name} is truncated: its header needs {header_size:,} bytes but the file has only "
                    f"{file_size - 8:,} after the length field; download or copy it again"
                )
            raw = handle.read(header_size)
    except OSError as error:
        raise ModelError(f"cannot read checkpoint {path.name}: {error.strerror or error}") from error
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{path.name} is not a valid .safetensors file: its header is not JSON ({error})") from error
    if not isinstance(header, dict):
        raise ModelError(f"{path.name} is not a valid .safetensors file: its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict):
        raise ModelError(f"{path.name}: the header's __metadata__ must be an object of strings")
    data_size = file_size - 8 - header_size
    tensors: dict[str, TensorInfo] = {}
    spans: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        info, begin, end = _check_entry(path, name, entry, data_size)
        tensors[name] = info
        spans.append((begin, end, name))
    # the tensors must tile the data section exactly: a gap or overlap means a forged or damaged file
    spans.sort()
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise ModelError(
                f"{path.name} is corrupted: tensor {name!r} starts at byte {begin:,} of the data section, "
                f"expected {position:,} (tensors must not overlap or leave gaps)"
            )
        position = end
    if position != data_size:
        kind = "truncated" if position > data_size else "corrupted"
        raise ModelError(
            f"{path.name} is {kind}: its header describes {position:,} bytes of tensor data but the file holds "
            f"{data_size:,}; download or copy it again"
        )
    return tensors


def _check_entry(path: Path, name: str, entry, data_size: int) -> tuple[TensorInfo, int, int]:
    where = f"{path.name}: tensor {name!r}"
    if not isinstance(entry, dict):
        raise ModelError(f"{where} has a malformed header entry (expected an object with dtype, shape, data_offsets)")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_SIZES:
        raise ModelError(f"{where} has dtype {dtype!r}; supported: {', '.join(SAFETENSORS_DTYPE_SIZES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_TENSOR_RANK
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise ModelError(f"{where} has shape {shape!r}; expected a list of at most {MAX_TENSOR_RANK} sizes >= 0")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise ModelError(f"{where} has data_offsets {offsets!r}; expected [begin, end]")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        raise ModelError(
            f"{path.name} is truncated or corrupted: tensor {name!r} lies at bytes {begin:,}-{end:,} but the data "
            f"section holds {data_size:,} bytes"
        )
    expected = math.prod(shape) * SAFETENSORS_DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise ModelError(
            f"{where} is corrupted: shape {shape} of {dtype} needs {expected:,} bytes but it is given {end - begin:,}"
        )
    return TensorInfo(dtype, tuple(shape)), begin, end


def pickle_to_safetensors(path: Path, cache_dir: Path) -> Path:
    """Load an opted-in pickle checkpoint with torch.load(weights_only=True) and save its tensors as .safetensors.

    weights_only refuses any pickled object other than tensors and plain containers, so a booby-trapped file
    fails here instead of running code. The converted file is cached by path, size and modification time.
    """
    import pickle

    import torch
    from safetensors.torch import save_file

    path = Path(path)
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = Path(cache_dir) / "converted-checkpoints" / f"{path.stem}-{key}.safetensors"
    if target.is_file():
        return target
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(
            f"refused to load {path.name}: it contains pickled objects other than tensors, which could run code "
            f"({first_line[:300]}); only plain weight checkpoints are allowed"
        ) from error
    except (EOFError, RuntimeError, ValueError, OSError) as error:
        raise ModelError(f"{path.name} is truncated or not a PyTorch checkpoint: {str(error)[:300]}") from error
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise ModelError(f"{path.name} holds a {type(data).__name__}, expected a dictionary of tensors")
    tensors = _detach_shared({k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)})
    if not tensors:
        raise ModelError(f"{path.name} holds no tensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.partial")
    try:
        save_file(tensors, str(partial), metadata={"converted_from": path.name})
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _detach_shared(tensors: dict) -> dict:
    """safetensors refuses tensors that share memory (tied weights, views): give each its own contiguous copy."""
    seen: set[int] = set()
    out = {}
    for name, tensor in tensors.items():
        tensor = tensor.contiguous()
        storage = tensor.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != tensor.numel() * tensor.element_size():
            tensor = tensor.clone()
            storage = tensor.untyped_storage()
        seen.add(storage.data_ptr())
        out[name] = tensor
    return out
