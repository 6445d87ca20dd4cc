"""The SDXL refiner's place beside the base model: loaded when a job asks for it, kept while jobs use it.

The ModelManager holds one base model; `RefinerSlot` holds at most one refiner next to it, loaded by the
manager's own loader (`_load_pipeline` and `_prepare`: the same dtype, device and --medvram/--lowvram offload
as the base). A txt2img or img2img job without a refiner (Refiner: None, or a switch at 1.0) frees it; other
tasks leave it as it is. Picking the loaded base as its own refiner shares that model instead of loading it twice.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from ldm_ui.engine.model_types import ModelError

# models.py's LoadedModel, ModelEntry and ModelManager, by name only: models.py builds the slot, so importing it
# here (even for type checking) would make an import cycle
LoadedModel = ModelEntry = ModelManager = Any

log = logging.getLogger(__name__)

REFINER_FAMILY = "sdxl"
ALLOWED = "an SDXL refiner or another SDXL model (or None for no refiner)"


def unet_family_of_folder(folder: Path) -> str | None:
    """The family a diffusers folder's U-Net config names (sdxl when it takes SDXL's text + time embedding), read
    without loading any weights; None when the folder has no readable U-Net config (the loaded model decides)."""
    try:
        config = json.loads((folder / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    return {1024: "sd2", 768: "sd1"}.get(config.get("cross_attention_dim"), "other")


FAMILY_LABELS = {"sd1": "an SD1.x model", "sd2": "an SD2.x model", "sd3": "an SD3 model", "flux": "a Flux model",
                 "pixart": "a PixArt model"}


def family_label(family: str) -> str:
    return FAMILY_LABELS.get(family, "a model of another family")


def refusal(name: str, family: str) -> ModelError:
    return ModelError(f"refiner {name!r} is not an SDXL model (it is {family_label(family)}); the refiner must be "
                      f"{ALLOWED}")


def check_base(base: LoadedModel) -> None:
    """The refiner finishes an SDXL base's latents (the same latent space); refuse any other base first."""
    if base.family != REFINER_FAMILY:
        raise ModelError(f"the refiner finishes an SDXL model's latents, but the model {base.entry.name!r} is not "
                         f"an SDXL model (it is {family_label(base.family)}); pick an SDXL model, or set Refiner "
                         "to None")


class RefinerSlot:
    """At most one refiner, held beside the manager's base model."""

    def __init__(self, manager: ModelManager):
        self.manager = manager
        self.current: LoadedModel | None = None

    def for_request(self, request: Any, base: LoadedModel | None,
                    report: Callable[[str], None] = lambda message: None) -> LoadedModel | None:
        """The refiner `request` asks for, loaded; None when it asks for none (which frees a held one). Requests
        without a refiner field (other tasks) keep whatever is held."""
        if not hasattr(request, "refiner"):
            return None
        settings = request.refiner
        if settings is None or not settings.active or base is None:
            self.release()
            return None
        check_base(base)
        return self.get(settings.checkpoint, base, report)

    def get(self, name: str, base: LoadedModel, report: Callable[[str], None]) -> LoadedModel:
        manager = self.manager
        entry = manager.resolve(name)
        if self.current is not None and self.current.entry == entry:
            return self.current
        self.release()
        if base.entry == entry:  # the base refines itself: the same weights, loaded once
            self.current = base
            return base
        self._check_before_loading(entry)
        report(f"loading refiner {entry.name}")
        started = time.perf_counter()
        pipe, family = manager._load_pipeline(entry, report)
        loaded = manager._prepare(entry, pipe, family)
        if loaded.family != REFINER_FAMILY:
            found = loaded.family
            del pipe, loaded
            manager.free_memory()
            raise refusal(entry.name, found)
        self.current = loaded
        log.info("loaded refiner %s in %.1f s", entry.name, time.perf_counter() - started)
        return loaded

    def release(self) -> None:
        """Drop the refiner (its memory goes back unless the base is the same model)."""
        if self.current is None:
            return
        shared = self.current is self.manager.current
        self.current = None
        if not shared:
            self.manager.free_memory()

    @staticmethod
    def _check_before_loading(entry: ModelEntry) -> None:
        """A diffusers folder says its family in its U-Net config: refuse a wrong one before loading gigabytes."""
        if entry.kind != "diffusers":
            return
        family = unet_family_of_folder(Path(entry.location))
        if family is not None and family != REFINER_FAMILY:
            raise refusal(entry.name, family)
