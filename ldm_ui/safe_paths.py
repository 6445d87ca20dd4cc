"""Resolve untrusted names (models, LoRAs, ControlNets, presets, wildcards) strictly inside their folders.

Every name that arrives from the UI or the HTTP API goes through `resolve_inside` before it touches the
filesystem: `../`, absolute paths, drive letters, NUL bytes and symlinks that leave the folder are refused
with a message that names the value and says what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterable

from ldm_ui.config import PROJECT_ROOT
from ldm_ui.requests import RequestError

MAX_NAME_CHARS = 255


class UnsafeNameError(RequestError):
    """A name that would reach outside its folder, or that does not name an allowed file there."""


def check_name(name: object, kind: str) -> str:
    """The shape checks that need no filesystem: text, no NUL, relative, no `..`, no drive or UNC prefix."""
    if not isinstance(name, str) or not name.strip():
        raise UnsafeNameError(f"{kind} name must be a non-empty name, got {name!r}")
    if len(name) > MAX_NAME_CHARS:
        raise UnsafeNameError(f"{kind} name is {len(name):,} characters long; the limit is {MAX_NAME_CHARS}")
    if "\x00" in name:
        raise UnsafeNameError(f"{kind} name {name!r} contains a NUL character, which is not allowed")
    if any(ord(ch) < 32 for ch in name):
        raise UnsafeNameError(f"{kind} name {name!r} contains a control character, which is not allowed")
    windows = PureWindowsPath(name)
    if PurePosixPath(name).is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("\\", "/", "~")):
        raise UnsafeNameError(f"{kind} name {name!r} is an absolute path; give a name inside the {kind} folder")
    parts = name.replace("\\", "/").split("/")
    if any(part in ("..", ".") for part in parts):
        raise UnsafeNameError(f"{kind} name {name!r} contains '..' or '.'; give a name inside the {kind} folder")
    return name


def shown_path(path: str | os.PathLike) -> str:
    """A path as messages may show it to users: relative to the app's folder (models/Lora) or the home folder
    (~/sd/models), else its last two parts (…/ckpts/Lora); never the full path of the server's disk."""
    absolute = Path(os.path.abspath(os.path.expanduser(str(path))))
    for root, prefix in ((PROJECT_ROOT, ""), (Path.home(), "~/")):
        try:
            return prefix + absolute.relative_to(root).as_posix()
        except ValueError:
            continue
    return "…/" + "/".join(absolute.parts[-2:])


def is_inside(path: Path, folder: Path) -> bool:
    """True when `path` (symlinks resolved) lies in `folder` (symlinks resolved) or is the folder itself."""
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def resolve_inside(folder: Path, name: str, allowed_suffixes: Iterable[str] = (), kind: str = "file",
                   must_exist: bool = True, directory: bool = False) -> Path:
    """The path `name` names inside `folder`, after refusing every way out of it.

    `allowed_suffixes` (e.g. (".safetensors",)) limits which files may be named; a name without one of them is
    tried with each in turn, so "style" finds "style.json". Symlinks are followed and must stay in the folder.
    `directory=True` names a sub-folder (a diffusers model) instead of a file.
    """
    check_name(name, kind)
    suffixes = tuple(s.lower() for s in allowed_suffixes)
    folder = Path(folder)
    candidates = [folder / name]
    if suffixes and Path(name).suffix.lower() not in suffixes:
        candidates = [folder / f"{name}{suffix}" for suffix in suffixes]
    for candidate in candidates:
        if not is_inside(candidate, folder):  # also catches a linked sub-folder on the way to a new file
            raise UnsafeNameError(
                f"{kind} {name!r} is a link that points outside {shown_path(folder)}; links must stay inside the "
                f"{kind} folder"
            )
        if candidate.is_dir() if directory else candidate.is_file():
            return Path(os.path.realpath(candidate))
    if not must_exist:
        return Path(os.path.realpath(candidates[0]))
    if suffixes and (folder / name).exists():
        raise UnsafeNameError(f"{kind} {name!r} has an unsupported type; allowed: {', '.join(suffixes)}")
    raise UnsafeNameError(f"{kind} {name!r} was not found in {shown_path(folder)}")


def list_inside(folder: Path, allowed_suffixes: Iterable[str], recursive: bool = True) -> list[str]:
    """Names (relative, '/'-separated) of the files under `folder` that `resolve_inside` would accept."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    suffixes = tuple(s.lower() for s in allowed_suffixes)
    found = folder.rglob("*") if recursive else folder.iterdir()
    names = []
    for path in sorted(found):
        if path.suffix.lower() in suffixes and path.is_file() and is_inside(path, folder):
            names.append(path.relative_to(folder).as_posix())
    return names


PICKLE_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_only_weights(folder: Path) -> list[str]:
    """The parts of a diffusers folder (its sub-folders, or the folder itself) whose weights are pickle files
    with no .safetensors beside them: loading those runs code from the file, so only --allow-pickle may."""
    folder = Path(folder)
    parts = []
    for part in [folder, *sorted(p for p in folder.iterdir() if p.is_dir())] if folder.is_dir() else []:
        files = [p.name.lower() for p in part.iterdir() if p.is_file()]
        if any(f.endswith(PICKLE_WEIGHT_SUFFIXES) for f in files) and not any(f.endswith(".safetensors") for f in files):
            parts.append("." if part == folder else part.name)
    return parts
