"""Upscalers: latent modes (for hires fix), plain resamplers, and learned models loaded with spandrel.

Learned upscalers are files in models/ESRGAN, models/RealESRGAN, models/SwinIR, models/DAT and every
--upscaler-dir; spandrel recognises the architecture (ESRGAN, SwinIR, DAT, ...) from the weights themselves.
Safety: a `.safetensors` file is only tensors; a `.pth` file is read with torch's weights-only unpickler, which
refuses anything but tensors and plain containers, so a pickle's code never runs. A file that does not load is
listed as broken with the reason, and the rest keep working.

Learned models run tile by tile (TILE_PX input pixels plus TILE_OVERLAP_PX of context on each side, which is
cropped away again), so a 4x upscale of a 1024px image needs memory for one tile, not for the whole image.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from functools import cached_property
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from ldm_ui.config import AppConfig
from ldm_ui.engine.checkpoint_files import read_safetensors_header
from ldm_ui.engine.model_types import ModelError
from ldm_ui.requests import RequestError

if TYPE_CHECKING:  # torch is imported where a model is loaded or run: listing upscalers (the UI) needs none
    import torch

log = logging.getLogger(__name__)

# AUTOMATIC1111's names for its latent upscale modes: name -> (torch interpolate mode, antialias)
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
NO_UPSCALER = "None"  # Extras: no upscaling by this slot
RESAMPLERS = {"Lanczos": Image.Resampling.LANCZOS, "Nearest": Image.Resampling.NEAREST}
UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT")
LEARNED_SUFFIXES = (".safetensors", ".pth")
TILE_PX = 192  # input pixels per tile side: a 4x ESRGAN tile then needs well under 1 GB of activations
TILE_OVERLAP_PX = 16  # context around each tile, cropped after the model ran, so tile seams do not show
MAX_MODEL_PASSES = 4  # a 2x model reaches at most 16x; more passes would only blur


@dataclass(frozen=True)
class LearnedFile:
    name: str  # the file's stem, as A1111 names ESRGAN models
    path: Path


class LearnedUpscaler:
    """A loaded spandrel model: image in, image `scale` times larger out."""

    def __init__(self, name: str, descriptor, device: torch.device):
        self.name, self.descriptor, self.device = name, descriptor, device
        self.scale = int(descriptor.scale)
        self.architecture = descriptor.architecture.name

    def __call__(self, image: Image.Image, check_cancel: Callable[[], None] = lambda: None) -> Image.Image:
        import torch

        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
        pixels = pixels.permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            result = run_tiled(self.descriptor, pixels, self.scale, check_cancel)
        array = (result[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(array)


def run_tiled(model: Callable[[torch.Tensor], torch.Tensor], pixels: torch.Tensor, scale: int,
              check_cancel: Callable[[], None] = lambda: None, tile: int = TILE_PX,
              overlap: int = TILE_OVERLAP_PX) -> torch.Tensor:
    """Run `model` over (1, 3, H, W) tile by tile; each tile sees `overlap` pixels of context that is cropped off."""
    import torch

    _, channels, height, width = pixels.shape
    out = torch.zeros(1, channels, height * scale, width * scale, device=pixels.device)
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            check_cancel()
            bottom, right = min(top + tile, height), min(left + tile, width)
            t0, l0 = max(top - overlap, 0), max(left - overlap, 0)
            b1, r1 = min(bottom + overlap, height), min(right + overlap, width)
            result = model(pixels[..., t0:b1, l0:r1])
            out[..., top * scale:bottom * scale, left * scale:right * scale] = result[
                ..., (top - t0) * scale:(bottom - t0) * scale, (left - l0) * scale:(right - l0) * scale].float()
    return out


def header_problem(path: Path) -> str | None:
    """Why `path` cannot be an upscaler file, from its first bytes only (cheap enough for every listing), or None.

    The full check (spandrel recognising the architecture) happens when the model is first used.
    """
    try:
        if path.suffix.lower() == ".safetensors":  # the header only (no torch: the UI lists upscalers)
            return None if read_safetensors_header(path) else "the file holds no tensors"
        if zipfile.is_zipfile(path):  # torch's own format since 1.6
            with zipfile.ZipFile(path) as archive:
                if not any(name.endswith("data.pkl") for name in archive.namelist()):
                    return "a zip file, but not one torch.save wrote"
            return None
        with path.open("rb") as handle:  # the legacy format: a pickle stream (protocol 2+ starts with 0x80)
            if handle.read(1) != b"\x80":
                return "neither safetensors nor a torch checkpoint"
        return None
    except ModelError as error:  # the header's own checks say what is wrong
        return str(error)[:200]
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported, not raised
        return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unreadable'}"[:200]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in an upscaler file, never running pickled code (see the module docstring)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if path.suffix.lower() == ".pth":
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)
    raise RequestError(f"upscaler files must be .safetensors or .pth, got {path.name}")


class UpscalerLibrary:
    """The upscalers this app knows, by name; loads learned ones on first use and keeps the last one loaded."""

    def __init__(self, config: AppConfig, device: torch.device | str = "cpu"):
        self.config = config
        self._device = device  # "auto" picks CUDA, MPS or the CPU when the first learned model loads
        self.broken: dict[str, str] = {}  # name -> why the file did not load
        self._loaded: LearnedUpscaler | None = None
        self._checked: dict[tuple[Path, int, int], str | None] = {}  # (path, mtime, size) -> header problem
        self._lock = threading.Lock()

    def folders(self) -> list[Path]:
        return [*(self.config.models_dir / folder for folder in UPSCALER_FOLDERS), *self.config.upscaler_dirs]

    def learned_files(self) -> dict[str, LearnedFile]:
        files: dict[str, LearnedFile] = {}
        for folder in self.folders():
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix.lower() in LEARNED_SUFFIXES and path.stem not in files:
                    files[path.stem] = LearnedFile(path.stem, path)
                    self._check_header(path)
        return files

    def _check_header(self, path: Path) -> None:
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._checked:
            self._checked[key] = header_problem(path)
            if self._checked[key]:
                self.broken[path.stem] = self._checked[key]
                log.warning("upscaler %s is broken: %s", path, self._checked[key])
            else:
                self.broken.pop(path.stem, None)  # a new or replaced file gets another chance

    def pixel_upscalers(self) -> list[str]:
        """Resamplers, then learned models (the broken ones left out)."""
        learned = [name for name in self.learned_files() if name not in self.broken]
        return [*RESAMPLERS, *learned]

    def hires_upscalers(self) -> list[str]:
        return [*LATENT_UPSCALE_MODES, *self.pixel_upscalers()]

    def describe_broken(self) -> list[str]:
        return [f"{name}: {reason}" for name, reason in sorted(self.broken.items())]

    def check_name(self, name: str, allowed: list[str]) -> None:
        if name in allowed:
            return
        if name in self.broken:
            raise RequestError(f"upscaler {name!r} is broken ({self.broken[name]}); choose one of: "
                               f"{', '.join(allowed)}")
        raise RequestError(f"unknown upscaler {name!r}; choose one of: {', '.join(allowed)}")

    @cached_property
    def device(self) -> torch.device:
        from ldm_ui.engine.devices import pick_device

        return pick_device(str(self._device))

    def load(self, name: str) -> LearnedUpscaler:
        with self._lock:
            if self._loaded is not None and self._loaded.name == name:
                return self._loaded
            files = self.learned_files()
            if name not in files:
                self.check_name(name, self.pixel_upscalers())
            self._loaded = None  # free the previous model before loading the next
            try:
                from spandrel import ImageModelDescriptor, ModelLoader, canonicalize_state_dict

                descriptor = ModelLoader().load_from_state_dict(canonicalize_state_dict(read_weights(files[name].path)))
                if not isinstance(descriptor, ImageModelDescriptor):
                    raise ValueError(f"{descriptor.architecture.name} is not an image-to-image model")
            except Exception as error:  # noqa: BLE001 - a bad file is reported, never a crash
                reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:200]
                self.broken[name] = reason
                log.warning("upscaler %s (%s) did not load: %s", name, files[name].path, reason)
                raise RequestError(f"upscaler {name!r} could not be loaded from {files[name].path.name}: {reason}; "
                                   f"it is listed as broken") from None
            self.broken.pop(name, None)
            self._loaded = LearnedUpscaler(name, descriptor.eval().to(self.device), self.device)
            return self._loaded

    def upscale(self, image: Image.Image, name: str, width: int, height: int,
                check_cancel: Callable[[], None] = lambda: None) -> Image.Image:
        """`image` resized to exactly width x height with the named pixel upscaler.

        A learned model runs as many times as it takes to reach the size (at most MAX_MODEL_PASSES), and the
        result is then resampled to the exact size with Lanczos, as AUTOMATIC1111 does.
        """
        image = image.convert("RGB")
        if name in RESAMPLERS:
            return image.resize((width, height), RESAMPLERS[name])
        model = self.load(name)
        for _ in range(MAX_MODEL_PASSES):
            if image.width >= width and image.height >= height:
                break
            image = model(image, check_cancel)
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        return image
