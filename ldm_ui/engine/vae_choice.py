"""The VAE selector: decode (and encode) with another VAE than the checkpoint's, without reloading the checkpoint.

Choices, as in AUTOMATIC1111:
- "Automatic": a `<checkpoint>.vae.safetensors` beside a single-file checkpoint if there is one, else the
  checkpoint's own VAE;
- "None": the checkpoint's own (baked-in) VAE;
- a name from models/VAE/ or a --vae-dir folder: a single-file `.safetensors` in the original (LDM) layout, read by
  diffusers' `AutoencoderKL.from_single_file` with the loaded model's own VAE config (so the latent family's
  scaling factor stays), or a diffusers folder (config.json + weights) read by `from_pretrained`.

Only the VAE module changes: `pipe.vae` and the task pipelines built over it get the new one, the codec and the
full preview are rebuilt over it, the U-Net and text encoders stay where they are. The checkpoint's own VAE waits
on the CPU while another is in use. The linear (approx) preview keeps its factors: they belong to the latent
family, which a VAE of the same channel count does not change.
"""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldm_ui.config import AppConfig
from ldm_ui.engine.file_hashes import hash_cache_path, short_file_hash
from ldm_ui.requests import RequestError
from ldm_ui.safe_paths import is_inside

log = logging.getLogger(__name__)

VAE_AUTOMATIC, VAE_NONE = "Automatic", "None"
SIDECAR_SUFFIX = ".vae.safetensors"
DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")


class VaeError(RequestError):
    """A VAE that cannot be found or does not fit the loaded model; the message names it and what is allowed."""


@dataclass(frozen=True)
class VaeFile:
    name: str  # what the user picks: the path under its folder
    path: Path
    kind: str  # single_file | diffusers

    @property
    def weights(self) -> Path | None:
        if self.kind == "single_file":
            return self.path
        return next((self.path / f for f in DIFFUSERS_WEIGHTS if (self.path / f).is_file()), None)

    @property
    def label(self) -> str:
        """The infotext's `VAE`: the file name without its extension(s), as A1111 writes it."""
        name = self.path.name
        for suffix in (SIDECAR_SUFFIX, ".safetensors"):
            if name.endswith(suffix):
                return name[: -len(suffix)]
        return name


@dataclass
class VaeSelection:
    """What a loaded model decodes with now, and the checkpoint's own VAE to go back to."""

    choice: str  # what was picked (Automatic, None or a name)
    file: VaeFile | None  # None: the checkpoint's own VAE
    hash: str  # the file's short sha256 ("" for the checkpoint's own)
    original: Any  # the checkpoint's own AutoencoderKL


def vae_dirs(config: AppConfig) -> list[Path]:
    return [config.models_dir / "VAE", *config.vae_dirs]


def list_vae_files(config: AppConfig) -> list[VaeFile]:
    found: dict[str, VaeFile] = {}
    for root in vae_dirs(config):
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if not is_inside(path, root):
                continue
            name = path.relative_to(root).as_posix()
            if path.is_file() and path.suffix.lower() == ".safetensors" and not _inside_diffusers_folder(path, root):
                found.setdefault(name, VaeFile(name, path, "single_file"))
            elif path.is_dir() and (path / "config.json").is_file() and any(
                    (path / f).is_file() for f in DIFFUSERS_WEIGHTS):
                found.setdefault(name, VaeFile(name, path, "diffusers"))
    return list(found.values())


def _inside_diffusers_folder(path: Path, root: Path) -> bool:
    return any((parent / "config.json").is_file() for parent in path.parents if is_inside(parent, root)
               and parent != root)


def vae_choices(config: AppConfig) -> list[str]:
    return [VAE_AUTOMATIC, VAE_NONE, *(f.name for f in list_vae_files(config))]


def sidecar_vae(model) -> VaeFile | None:
    """`<name>.vae.safetensors` beside a single-file checkpoint `<name>.safetensors` (A1111's automatic rule)."""
    if model.entry.kind != "single_file":
        return None
    checkpoint = Path(model.entry.location)
    sidecar = checkpoint.with_name(checkpoint.name[: -len(checkpoint.suffix)] + SIDECAR_SUFFIX)
    return VaeFile(sidecar.name, sidecar, "single_file") if sidecar.is_file() else None


def resolve_choice(model, choice: str, config: AppConfig) -> VaeFile | None:
    """The VAE file a choice means for `model` (None: the checkpoint's own)."""
    if choice == VAE_NONE:
        return None
    if choice == VAE_AUTOMATIC:
        return sidecar_vae(model)
    for vae_file in list_vae_files(config):
        if vae_file.name == choice:
            return vae_file
    folders = ", ".join(str(d) for d in vae_dirs(config))
    raise VaeError(f"unknown VAE {choice!r}: pick Automatic, None or one of the VAEs in {folders} "
                   f"({', '.join(vae_choices(config)[2:]) or 'none found'})")


# ---- loading


def latent_channels_in_file(vae_file: VaeFile) -> int | None:
    """The latent channels a VAE file decodes, read from its config or its decoder's first convolution."""
    if vae_file.kind == "diffusers":
        return json.loads((vae_file.path / "config.json").read_text()).get("latent_channels")
    from safetensors import safe_open

    with safe_open(str(vae_file.path), framework="pt") as handle:
        for key in handle.keys():
            if key.endswith("decoder.conv_in.weight"):
                return int(handle.get_slice(key).get_shape()[1])
    return None


def load_vae_module(vae_file: VaeFile, original, cache_dir: Path):
    """An AutoencoderKL from the file, with the loaded VAE's config for a single file (same latent family)."""
    from diffusers import AutoencoderKL

    if vae_file.kind == "diffusers":
        return AutoencoderKL.from_pretrained(str(vae_file.path), local_files_only=True, torch_dtype=original.dtype)
    text = json.dumps(dict(original.config), indent=1, sort_keys=True)
    config_dir = cache_dir / "vae-configs" / hashlib.sha256(text.encode()).hexdigest()[:16]
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "config.json").write_text(text)
    return AutoencoderKL.from_single_file(str(vae_file.path), config=str(config_dir), local_files_only=True,
                                          torch_dtype=original.dtype)


def apply_vae(model, choice: str, config: AppConfig) -> VaeSelection:
    """Make `model` decode with the VAE `choice` means; a no-op when that VAE is already in use."""
    from ldm_ui.engine.preview import VaePreview
    from ldm_ui.engine.vae import VaeCodec

    pipe = model.pipe
    current: VaeSelection = model.vae_selection or VaeSelection(VAE_AUTOMATIC, None, "", pipe.vae)
    target = resolve_choice(model, choice, config)
    if target == current.file:
        model.vae_selection = VaeSelection(choice, current.file, current.hash, current.original)
        return model.vae_selection
    original = current.original
    if target is None:
        vae = original
    else:
        wanted = int(original.config.latent_channels)
        channels = latent_channels_in_file(target)
        if channels is not None and channels != wanted:
            raise VaeError(f"VAE {target.name!r} has {channels} latent channels but model {model.entry.name!r} "
                           f"uses {wanted}; pick a VAE made for this model's family")
        try:
            vae = load_vae_module(target, original, config.cache_dir)
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            raise VaeError(f"could not load VAE {target.name!r}: {error}") from None
    _install(model, vae, original, config)
    weights = target.weights if target is not None else None
    model.vae_selection = VaeSelection(choice, target, short_file_hash(weights, hash_cache_path(config.cache_dir)) if weights else "", original)
    model.vae = VaeCodec(pipe)
    model.full_preview = VaePreview(model.vae)
    log.info("VAE for %s: %s", model.entry.name, target.name if target else "the checkpoint's own")
    return model.vae_selection


def _install(model, vae, original, config: AppConfig) -> None:
    from ldm_ui.engine.vae import forget_execution_device  # torch's side, loaded with the model

    pipe, previous = model.pipe, model.pipe.vae
    offloaded = model.device.type == "cuda" and (config.lowvram or config.medvram)
    if previous is original and vae is not original:
        original.to("cpu")  # the checkpoint's own waits in RAM, not VRAM
    if not offloaded:
        vae.to(model.device)
    vae.eval()
    pipe.vae = vae
    for task_pipe in model.pipelines.values():
        task_pipe.vae = vae
    if offloaded:  # the offload hooks belong to modules: rebuild them over the new set
        pipe.enable_sequential_cpu_offload() if config.lowvram else pipe.enable_model_cpu_offload()
    for placed in (pipe, *model.pipelines.values()):
        forget_execution_device(placed)


def reapply_after_load(model, choice: str | None, config: AppConfig) -> None:
    """After a model load: the choice the previous model had (Automatic at first); a choice that no longer fits
    falls back to Automatic, with a warning, rather than failing the load."""
    try:
        apply_vae(model, choice or VAE_AUTOMATIC, config)
    except VaeError as error:
        log.warning("%s; using Automatic for %s", error, model.entry.name)
        apply_vae(model, VAE_AUTOMATIC, config)


@contextmanager
def vae_for_job(model, choice: str | None, config: AppConfig):
    """A request's own VAE choice for one job; the model's previous choice is back afterwards, after a failure or
    an interrupt too (a previous choice whose file has gone falls back to Automatic, as after a model load)."""
    if not choice or model is None:
        yield
        return
    previous = model.vae_selection.choice if model.vae_selection else VAE_AUTOMATIC
    apply_vae(model, choice.strip(), config)
    try:
        yield
    finally:
        reapply_after_load(model, previous, config)


def vae_infotext(model) -> dict[str, str]:
    """`VAE hash` and `VAE`, as A1111 writes them, when a VAE file (not the checkpoint's own) decodes."""
    selection = getattr(model, "vae_selection", None)
    if selection is None or selection.file is None:
        return {}
    return {"VAE hash": selection.hash, "VAE": selection.file.label}
