"""ControlNet preprocessors: turn a user's image into the control signal a ControlNet was trained on.

Detectors come from controlnet-aux (imported on first use: the package is slow to import); Canny calls OpenCV
directly, as controlnet-aux's CannyDetector does, so the common case skips that import. Canny and the
standard line-art extractor need no weights and work offline; the learned detectors need their weight files
from the `lllyasviel/Annotators` repository, placed in `models/ControlNet/annotators/`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

ANNOTATOR_REPO = "lllyasviel/Annotators"


class PreprocessorError(ValueError):
    """A preprocessor that cannot run; the message says what is missing and where to put it."""


@dataclass(frozen=True)
class Preprocessor:
    name: str
    description: str
    module: str = ""  # controlnet_aux submodule and class, for the learned detectors
    class_name: str = ""
    weight_files: tuple[str, ...] = ()  # files the detector reads from the annotators folder

    @property
    def needs_download(self) -> bool:
        return bool(self.weight_files)


PREPROCESSORS: dict[str, Preprocessor] = {p.name: p for p in (
    Preprocessor("none", "use the image as the control map, unchanged"),
    Preprocessor("canny", "Canny edge map (offline, no weights)"),
    Preprocessor("lineart_standard", "line art from brightness differences (offline, no weights)"),
    Preprocessor("invert", "invert: black lines on white (a sketch) -> white lines on black (offline)"),
    Preprocessor("hed", "HED soft edges", "hed", "HEDdetector", ("ControlNetHED.pth",)),
    Preprocessor("pidinet", "PiDiNet soft edges", "pidi", "PidiNetDetector", ("table5_pidinet.pth",)),
    Preprocessor("lineart", "learned line art", "lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth")),
    Preprocessor("lineart_anime", "anime line art", "lineart_anime", "LineartAnimeDetector", ("netG.pth",)),
    Preprocessor("mlsd", "M-LSD straight lines", "mlsd", "MLSDdetector", ("mlsd_large_512_fp32.pth",)),
    Preprocessor("depth_midas", "MiDaS depth", "midas", "MidasDetector", ("dpt_hybrid-midas-501f0c75.pt",)),
    Preprocessor("normal_bae", "BAE surface normals", "normalbae", "NormalBaeDetector", ("scannet.pt",)),
    Preprocessor("openpose", "OpenPose body keypoints", "open_pose", "OpenposeDetector",
                 ("body_pose_model.pth", "hand_pose_model.pth", "facenet.pth")),
)}
PREPROCESSOR_NAMES = tuple(PREPROCESSORS)
CANNY_LOW, CANNY_HIGH = 100, 200


def annotators_dir(models_dir: Path) -> Path:
    return models_dir / "ControlNet" / "annotators"


def missing_weights(name: str, models_dir: Path) -> list[str]:
    folder = annotators_dir(models_dir)
    return [f for f in PREPROCESSORS[name].weight_files if not (folder / f).is_file()]


def describe(name: str, models_dir: Path) -> str:
    spec = PREPROCESSORS[name]
    missing = missing_weights(name, models_dir)
    if not missing:
        return spec.description
    return f"{spec.description} — needs {', '.join(missing)} (see the LoRA/ControlNet tab)"


def preprocess(image: Image.Image, name: str, width: int, height: int, models_dir: Path,
               canny_low: int = CANNY_LOW, canny_high: int = CANNY_HIGH,
               extra: dict[str, Callable] | None = None) -> Image.Image:
    """The control map for `image`, `width` x `height` RGB: the image is resized to the output size first,
    so the map lines up with the generated picture. `extra`: preprocessors extensions registered (name -> fn)."""
    extra = extra or {}
    if name not in PREPROCESSORS and name not in extra:
        names = ", ".join([*PREPROCESSOR_NAMES, *extra])
        raise PreprocessorError(f"unknown preprocessor {name!r}; choose one of: {names}")
    source = image.convert("RGB").resize((width, height), Image.LANCZOS)
    if name not in PREPROCESSORS:
        return extra[name](source).convert("RGB").resize((width, height), Image.BILINEAR)
    if name == "none":
        return source
    if name == "invert":
        return ImageOps.invert(source)
    resolution = min(width, height)
    if name == "canny":
        import cv2

        edges = cv2.Canny(np.asarray(source), int(canny_low), int(canny_high))
        return Image.fromarray(edges).convert("RGB")
    detector = _cached_detector(name, str(models_dir))
    kwargs = {"detect_resolution": resolution, "output_type": "pil"}
    if name != "lineart_standard":
        kwargs["image_resolution"] = resolution
    result = detector(source, **kwargs)
    return result.convert("RGB").resize((width, height), Image.BILINEAR)


@functools.lru_cache(maxsize=2)  # a detector (HED, MiDaS, ...) loads in seconds; keep the last two for the next map
def _cached_detector(name: str, models_dir: str):
    return _load_detector(name, Path(models_dir))


def _load_detector(name: str, models_dir: Path):
    import importlib

    if name == "lineart_standard":
        from controlnet_aux.lineart_standard import LineartStandardDetector

        return LineartStandardDetector()
    spec = PREPROCESSORS[name]
    missing = missing_weights(name, models_dir)
    if missing:
        raise PreprocessorError(
            f"the {name} preprocessor needs weights that are not downloaded: {', '.join(missing)}. "
            f"Download them from https://huggingface.co/{ANNOTATOR_REPO} and place them in "
            f"{annotators_dir(models_dir)} (or pick canny, lineart_standard, invert or none, which need no weights)"
        )
    module = importlib.import_module(f"controlnet_aux.{spec.module}")
    return getattr(module, spec.class_name).from_pretrained(str(annotators_dir(models_dir)))
