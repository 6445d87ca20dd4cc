"""LoRA: find files, read `<lora:name:weight>` prompt tags, and activate them on the loaded pipeline.

Adapters are loaded once per (model, file) through diffusers' peft-backed LoRA loaders and stay loaded; a job
only changes which adapters are active and at what weight, so a weight change never reloads the base model.
With no LoRA in a job the adapter layers are disabled, which restores the base model's output exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from ldm_ui.config import AppConfig
from ldm_ui.requests import RequestError
from ldm_ui.safe_paths import check_name, is_inside, shown_path

log = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors",)
# <lora:name> or <lora:name:weight>; A1111 also allows a third te/unet weight, which we read as the one weight
LORA_TAG = re.compile(r"<lora:([^:<>]+?)(?::\s*([^:<>]*?))?(?::[^<>]*)?>", re.IGNORECASE)
MAX_LORA_WEIGHT = 10.0
MAX_INACTIVE_ADAPTERS = 8  # adapters kept loaded but unused; older ones are deleted to bound memory


class LoraError(RequestError):
    """A LoRA that cannot be found or loaded; the message names it and says what is allowed."""


@dataclass(frozen=True)
class LoraEntry:
    name: str  # what the user types in <lora:name:weight>: the file name without suffix, relative to its folder
    path: Path


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float


def lora_dirs(config: AppConfig) -> list[Path]:
    return [config.models_dir / "Lora", *config.lora_dirs]


def list_loras(config: AppConfig) -> list[LoraEntry]:
    entries: dict[str, LoraEntry] = {}
    for root in lora_dirs(config):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in LORA_SUFFIXES and path.is_file() and is_inside(path, root):
                name = path.relative_to(root).with_suffix("").as_posix()
                entries.setdefault(name, LoraEntry(name, path))
    return sorted(entries.values(), key=lambda e: e.name.lower())


def find_lora(config: AppConfig, name: str) -> LoraEntry:
    """Resolve a tag's name to a file inside the LoRA folders only (no paths outside them)."""
    check_name(name, "LoRA")
    entries = list_loras(config)
    for entry in entries:
        if entry.name == name:
            return entry
    for entry in entries:  # A1111 matches case-insensitively too
        if entry.name.lower() == name.lower():
            return entry
    known = ", ".join(e.name for e in entries) or "none found"
    folders = ", ".join(shown_path(d) for d in lora_dirs(config))
    raise LoraError(f"unknown LoRA {name!r} in <lora:{name}:…>: put {name}.safetensors in {folders} "
                    f"(available: {known})")


def parse_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """Return the prompt without its <lora:…> tags, and the tags (a repeated name keeps its last weight)."""
    tags: dict[str, LoraTag] = {}
    for match in LORA_TAG.finditer(prompt):
        name, weight_text = match[1].strip(), (match[2] or "").strip()
        if not name:
            raise LoraError(f"{match[0]!r}: a LoRA tag needs a name, like <lora:name:0.8>")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise LoraError(f"{match[0]!r}: the LoRA weight must be a number, like <lora:{name}:0.8>, "
                            f"got {weight_text!r}") from None
        if not -MAX_LORA_WEIGHT <= weight <= MAX_LORA_WEIGHT:
            raise LoraError(f"{match[0]!r}: the LoRA weight must be between {-MAX_LORA_WEIGHT:g} and "
                            f"{MAX_LORA_WEIGHT:g}, got {weight:g}")
        tags.pop(name, None)
        tags[name] = LoraTag(name, weight)
    return strip_lora_tags(prompt), list(tags.values())


def strip_lora_tags(prompt: str) -> str:
    stripped = LORA_TAG.sub("", prompt)
    stripped = re.sub(r"[ \t]*,(?:[ \t]*,)+", ",", stripped)  # "a, <lora:x>, b" -> "a, b"
    return re.sub(r"[ \t]{2,}", " ", stripped).strip(" \t,")


def lora_tag(name: str, weight: float = 1.0) -> str:
    return f"<lora:{name}:{weight:g}>"


# ---- files: layout check and A1111's short hash


def lora_layout(path: Path) -> str:
    """'kohya' or 'diffusers'; raises LoraError naming the file when it is neither."""
    keys = safetensors_keys(path)
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora.up." in k
           or ".lora_linear_layer." in k for k in keys):
        return "diffusers"
    sample = ", ".join(sorted(keys)[:3]) or "no tensors"
    raise LoraError(
        f"{path.name} is not a LoRA file this app can read: expected kohya/AUTOMATIC1111 keys "
        "(lora_unet_…lora_down.weight / lora_up.weight / alpha) or diffusers/peft keys "
        f"(unet.….lora_A.weight / lora_B.weight); found {sample}"
    )


def safetensors_keys(path: Path) -> list[str]:
    try:
        header, _ = _read_header(path)
    except (OSError, ValueError) as error:
        raise LoraError(f"{path.name} is not a readable .safetensors file: {error}") from None
    return [k for k in header if k != "__metadata__"]


def _read_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) != 8:
            raise ValueError("the file is too short")
        (length,) = struct.unpack("<Q", prefix)
        if length > 100_000_000 or length > path.stat().st_size:
            raise ValueError("the header length is not plausible")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, 8 + length


def cached_lora_hash(path: Path, cache_dir: Path) -> str | None:
    """The short hash if it was computed before (hashing a large folder of LoRAs takes a while)."""
    stat = path.stat()
    try:
        cache = json.loads((cache_dir / "lora-hashes.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return cache.get(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")


def lora_hash(path: Path, cache_dir: Path) -> str:
    """A1111's LoRA short hash: sha256 of the tensor data after the safetensors header, 12 hex digits."""
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    cache_path = cache_dir / "lora-hashes.json"
    try:
        cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    if key not in cache:
        try:
            _, offset = _read_header(path)
        except (OSError, ValueError):
            offset = 0
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            handle.seek(offset)
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cache[key] = digest.hexdigest()[:12]
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=0))
        os.replace(tmp, cache_path)
    return cache[key]


# ---- activation on the loaded pipeline


def adapter_name(entry: LoraEntry, short_hash: str) -> str:
    # peft keeps adapters in ModuleDicts, whose keys may not contain dots
    return re.sub(r"\W", "_", entry.name) + "_" + short_hash


def loaded_adapters(pipe) -> list[str]:
    names: list[str] = []
    for adapters in pipe.get_list_adapters().values():
        names += [a for a in adapters if a not in names]
    return names


def activate_loras(ctx, prompt: str) -> dict[str, str]:
    """Make exactly the prompt's LoRAs active at their weights; return the infotext entries that record them.

    Called once per job before sampling by every task (the batch loop does it for the ones that use it).
    """
    _, tags = parse_lora_tags(prompt)
    if not hasattr(ctx.model.pipe, "load_lora_weights"):  # a family whose diffusers pipeline has no LoRA loader
        if tags:
            ctx.model.family_row.require("lora", ctx.model.entry.name)
        ctx.lora_state = ((), "")
        return {}
    # merged into the weights while the same set repeats; not under offload (its hooks move weights around)
    entries = apply_loras(ctx.config, ctx.model.pipe, tags, report=ctx.status, fuse=not ctx.model.offloaded)
    ctx.lora_state = (tuple((tag.name, tag.weight) for tag in tags), entries.get("Lora hashes", ""))
    return entries


def apply_loras(config: AppConfig, pipe, tags: list[LoraTag], report=lambda text: None,
                fuse: bool = False) -> dict[str, str]:
    """Make exactly `tags` active; with `fuse`, merge them into the weights (kept merged while the next jobs ask
    for the same LoRAs at the same weights, restored exactly when they change: see lora_fusion.py)."""
    from ldm_ui.engine.lora_fusion import LoraFusion  # torch's side; listing and parsing tags (the UI) need none

    fusion = LoraFusion.of(pipe)
    if not tags:
        fusion.release()
        if loaded_adapters(pipe):
            pipe.disable_lora()
        return {}
    resolved = [(tag, find_lora(config, tag.name)) for tag in tags]
    names, weights, hashes = [], [], []
    for tag, entry in resolved:
        short_hash = lora_hash(entry.path, config.cache_dir)
        names.append(adapter_name(entry, short_hash))
        weights.append(tag.weight)
        hashes.append(f"{entry.name}: {short_hash}")
    entries = {"Lora hashes": ", ".join(hashes)}
    key = (tuple(names), tuple(weights))
    if fuse and fusion.key == key:
        return entries  # merged already: nothing to change
    fusion.release()
    for (tag, entry), name in zip(resolved, names):
        if name not in loaded_adapters(pipe):
            report(f"loading LoRA {entry.name}")
            load_lora_file(pipe, entry, name)
    pipe.enable_lora()
    pipe.set_adapters(names, adapter_weights=weights)
    _forget_unused(pipe, keep=set(names))
    if fuse:
        fusion.fuse(key, names)
    return entries


def load_lora_file(pipe, entry: LoraEntry, name: str) -> None:
    layout = lora_layout(entry.path)
    try:
        pipe.load_lora_weights(str(entry.path.parent), weight_name=entry.path.name, adapter_name=name)
    except Exception as error:  # noqa: BLE001 - a LoRA for another model family fails in many ways
        _drop_partial(pipe, name)
        raise LoraError(
            f"LoRA {entry.name!r} ({entry.path.name}, {layout} layout) does not fit the loaded model: {error}. "
            "A LoRA only works with the model family it was trained for (SD 1.x, SD 2.x or SDXL)."
        ) from error
    if name not in loaded_adapters(pipe):
        raise LoraError(f"LoRA {entry.name!r} ({entry.path.name}) has no layers that match the loaded model; "
                        "it was probably trained for another model family")
    log.info("loaded LoRA %s (%s layout) as adapter %s", entry.name, layout, name)


def _drop_partial(pipe, name: str) -> None:
    try:
        if name in loaded_adapters(pipe):
            pipe.delete_adapters(name)
    except Exception:  # noqa: BLE001 - best effort cleanup after a failed load
        log.exception("could not remove the partly loaded adapter %s", name)


def _forget_unused(pipe, keep: set[str]) -> None:
    unused = [a for a in loaded_adapters(pipe) if a not in keep]
    extra = len(unused) - MAX_INACTIVE_ADAPTERS
    if extra > 0:
        pipe.delete_adapters(unused[:extra])


def describe_loaded(pipe) -> list[str]:
    """Adapter names on the pipeline: the merged ones (lora_fusion.py) with their weights, then the loaded ones."""
    if pipe is None or not hasattr(pipe, "get_list_adapters"):
        return []
    from ldm_ui.engine.lora_fusion import LoraFusion

    fusion = LoraFusion.of(pipe)
    merged = [f"{name} (active, merged at {weight:g})" for name, weight in zip(*fusion.key)] if fusion.merged else []
    active = set(pipe.get_active_adapters()) if loaded_adapters(pipe) else set()
    return merged + [f"{name}{' (active)' if name in active else ''}" for name in loaded_adapters(pipe)]
