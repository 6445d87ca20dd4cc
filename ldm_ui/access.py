"""Who may reach the app and which files Gradio may serve: warnings, the UI banner and launch() file settings.

Gradio serves a file only when it lies in `allowed_paths`, its upload folder or its cache; `blocked_paths`
beat all three. We allow the outputs folder (results are copied from there into Gradio's cache) and block
the models, the app's cache, the credentials file, the Hugging Face cache and the home folder, the project
folder and the working directory around the outputs folder.

Blocking a folder also blocks everything inside it, including an allowed outputs folder. So when the outputs
folder (or Gradio's own upload/cache folder, which lives in the home folder on Windows) lies inside the home
folder, we do not block the home folder itself: we block every entry of it except the one on the way to the
outputs folder, and repeat one level down, until we reach the outputs folder.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable

from ldm_ui.config import PROJECT_ROOT, AppConfig

log = logging.getLogger(__name__)
PRIVATE_TEMP_PREFIX = "ldm-ui-gradio-"

SHARE_WITHOUT_AUTH_BANNER = (
    "⚠️ This app is shared publicly without a login: anyone with the link can use this GPU and see what it makes."
)
LISTEN_WITHOUT_AUTH_WARNING = (
    "--listen without --auth: anyone on your network can use this app; add --auth user:password to require a login"
)


def exposure_banner(config: AppConfig) -> str | None:
    """The banner shown on every page when the app is public without a login."""
    if config.share and not config.auth:
        return SHARE_WITHOUT_AUTH_BANNER
    return None


def exposure_warnings(config: AppConfig) -> list[str]:
    """What the launcher logs as warnings before it starts serving."""
    warnings = []
    if config.share and not config.auth:
        warnings.append(SHARE_WITHOUT_AUTH_BANNER + " (started with --share-without-auth)")
    elif config.listen and not config.auth:
        warnings.append(LISTEN_WITHOUT_AUTH_WARNING)
    return warnings


def admins(config: AppConfig) -> list[str] | None:
    """The logins that may change app-wide state; None means everyone (no login configured)."""
    if not config.auth:
        return None
    return list(config.admins) or [config.auth[0][0]]


def is_admin(config: AppConfig, user: str | None) -> bool:
    allowed = admins(config)
    return allowed is None or user in allowed


def not_admin_message(what: str) -> str:
    return f"Only an admin can {what}; the app's owner names admins with --admin."


def gradio_folders() -> list[Path]:
    """Where Gradio keeps uploads and the copies of results it serves (GRADIO_TEMP_DIR or <tmp>/gradio)."""
    return [Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")]


def allowed_paths(config: AppConfig) -> list[str]:
    return [str(_real(config.outputs_dir))]


def blocked_paths(config: AppConfig, keep: Iterable[Path] | None = None) -> list[str]:
    """Folders and files Gradio must never serve, whatever else allows them; never one that holds `keep`."""
    keep = [_real(p) for p in (keep if keep is not None else [config.outputs_dir, *gradio_folders()])]
    secret = [config.models_dir, config.cache_dir, *config.checkpoint_dirs(), *config.lora_dirs,
              *config.embeddings_dirs, _hf_cache()]
    auth_file = getattr(config, "auth_file", None)
    if auth_file:
        secret.append(Path(auth_file))
    blocked: list[Path] = []
    for path in map(_real, secret):
        if any(_inside(k, path) for k in keep):
            log.warning("not blocking %s for file access: the outputs or upload folder lies inside it", path)
        else:
            blocked.append(path)
    for root in {_real(Path.home()), _real(PROJECT_ROOT), _real(Path.cwd())}:
        blocked.extend(_block_around(root, keep))
    return sorted({str(p) for p in blocked})


def _block_around(root: Path, keep: list[Path]) -> list[Path]:
    """`root` itself when it holds none of `keep`; otherwise every entry on the way down that leads elsewhere."""
    inner = [k for k in keep if _inside(k, root)]
    if not inner:
        return [root]
    if any(k == root for k in inner) or not root.is_dir():
        return []
    blocked = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for entry in entries:
        entry = Path(os.path.abspath(entry))
        leads_to = [k for k in inner if _inside(k, entry)]
        if not leads_to:
            blocked.append(entry)
        elif not entry.is_symlink():
            blocked.extend(_block_around(entry, leads_to))
    return blocked


def file_access_kwargs(config: AppConfig) -> dict:
    """The launch() arguments that limit file access and upload size."""
    return dict(allowed_paths=allowed_paths(config), blocked_paths=blocked_paths(config),
                max_file_size=f"{config.max_file_size_mb}mb")


def _hf_cache() -> Path:
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def use_private_gradio_folder() -> Path:
    """Point Gradio's upload and cache folder at a new folder only this user can open (0700), not the
    <tmp>/gradio folder every Gradio app on the machine shares and serves from."""
    current = os.environ.get("GRADIO_TEMP_DIR")
    if current and Path(current).name.startswith(PRIVATE_TEMP_PREFIX) and Path(current).is_dir():
        return Path(current)  # already ours (a second app in this process)
    folder = Path(tempfile.mkdtemp(prefix=PRIVATE_TEMP_PREFIX))  # mkdtemp makes it 0700
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def basic_auth_user(header: str, logins: list[tuple[str, str]]) -> str | None:
    """The user an HTTP Basic `Authorization` header signs in as, or None. Every login is compared in constant
    time, so the timing tells nothing about which part was wrong."""
    import base64
    import binascii
    import secrets

    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    found = None
    for known_user, known_password in logins:
        user_ok = secrets.compare_digest(user.encode(), known_user.encode())
        password_ok = secrets.compare_digest(password.encode(), known_password.encode())
        if sep and user_ok and password_ok:
            found = known_user
    return found
