"""The checkpoint families ldm-ui knows, one row each: how a loaded pipeline is recognized, which tasks and
controls apply, and why the ones that do not apply are missing. The engine refuses a request for a missing
feature with that reason; the UI hides or disables the control and shows the same reason in the tab.

No torch or diffusers import here: requests, the UI and presets read this table cheaply.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ldm_ui.requests import RequestError

# the features a family may lack, in the words the UI and the messages use
FEATURES = {
    "img2img": "img2img",
    "inpaint": "inpainting",
    "controlnet": "ControlNet",
    "negative_prompt": "negative prompt",
    "clip_skip": "clip skip",
    "variation_seeds": "variation seeds",
    "lora": "LoRA",
    "prompt_weights": "prompt weighting and editing ((word:1.2), [a:b:0.5])",
    "interpolate": "interpolation",
}


@dataclass(frozen=True)
class Family:
    name: str  # what LoadedModel.family holds, infotext and messages show
    label: str
    denoiser_class: str  # the class of the pipeline's U-Net or transformer that marks this family
    pipeline_classes: tuple[str, ...]  # model_index.json `_class_name`s of its diffusers folders
    # feature -> why it does not apply to this family (a feature not listed applies)
    missing: dict[str, str] = field(default_factory=dict)
    guidance: str = "classifier-free"  # or "distilled": the CFG scale is the embedded guidance strength
    txt2img_kwargs: dict[str, Any] = field(default_factory=dict)  # what its txt2img pipeline call adds

    def supports(self, feature: str) -> bool:
        return feature not in self.missing

    def require(self, feature: str, model_name: str) -> None:
        """RequestError naming the model, its family and why, when `feature` does not apply."""
        if feature in self.missing:
            raise RequestError(f"{FEATURES[feature]} does not work with {model_name} ({self.label}): "
                               f"{self.missing[feature]}")


_UNET_NOTE = "in ldm-ui only for U-Net models (SD 1.x, 2.x, SDXL and the demo)"
_PLAIN_PROMPTS = "this family's pipeline encodes the prompt text itself, as written"


def _dit_missing(**extra: str) -> dict[str, str]:
    return {"variation_seeds": f"{_UNET_NOTE}; this family's pipeline draws its own noise",
            "controlnet": _UNET_NOTE, "interpolate": f"{_UNET_NOTE}: it walks between noises and text embeddings",
            "clip_skip": _PLAIN_PROMPTS,
            "prompt_weights": _PLAIN_PROMPTS, **extra}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd1", "SD 1.x", "UNet2DConditionModel", ("StableDiffusionPipeline",)),
    Family("sd2", "SD 2.x", "UNet2DConditionModel", ("StableDiffusionPipeline",)),
    Family("sdxl", "SDXL", "UNet2DConditionModel", ("StableDiffusionXLPipeline",)),
    Family("sd3", "SD3 / SD3.5", "SD3Transformer2DModel", ("StableDiffusion3Pipeline",),
           missing=_dit_missing()),
    Family("flux", "FLUX.1", "FluxTransformer2DModel", ("FluxPipeline",),
           guidance="distilled", missing=_dit_missing(
               negative_prompt="FLUX.1 is guidance-distilled: it has no unconditional pass, so a negative prompt "
                               "is ignored; the CFG scale sets its embedded guidance strength")),
    Family("pixart", "PixArt-Sigma", "PixArtTransformer2DModel", ("PixArtSigmaPipeline",),
           # binning would silently change the requested size to the nearest trained aspect ratio
           txt2img_kwargs={"use_resolution_binning": False},
           missing=_dit_missing(
               img2img="diffusers has no img2img pipeline for PixArt-Sigma (txt2img only)",
               inpaint="diffusers has no inpainting pipeline for PixArt-Sigma (txt2img only)",
               lora="diffusers' PixArt-Sigma pipeline has no LoRA loader")),
    Family("other", "another U-Net model", "UNet2DConditionModel", ()),
)}
TRANSFORMER_FAMILIES = {f.denoiser_class: f.name for f in FAMILIES.values()
                        if f.denoiser_class.endswith("Transformer2DModel")}


def family_named(name: str) -> Family:
    """The row for a family name; an unlisted name (a demo or custom U-Net model) is a U-Net with every feature."""
    return FAMILIES.get(name, FAMILIES["other"])


def family_of_pipeline_class(class_name: str) -> str | None:
    """The DiT family a diffusers folder holds, from its model_index.json `_class_name` (None: not one of them;
    the U-Net families share pipeline classes and are told apart from the loaded U-Net)."""
    for family in FAMILIES.values():
        if class_name in family.pipeline_classes and family.denoiser_class.endswith("Transformer2DModel"):
            return family.name
    return None


def family_of_pipeline(pipe) -> str:
    """The family a loaded pipeline belongs to, from its denoiser's class and the U-Net's configuration."""
    unet = getattr(pipe, "unet", None)
    if unet is None:
        return TRANSFORMER_FAMILIES.get(type(pipe.transformer).__name__, "other")
    config = unet.config
    if getattr(config, "addition_embed_type", None) == "text_time":
        return "sdxl"
    return {1024: "sd2", 768: "sd1"}.get(config.cross_attention_dim, "other")


def fit_request(request, family: Family):
    """The request as this family runs it, and a note per setting it ignores: a negative prompt a guidance-distilled
    model has no use for is dropped (so the infotext does not claim it), a clip skip the pipeline cannot apply is
    reset. What cannot be ignored (ControlNet units, variation seeds, LoRA tags) is refused where it is used."""
    notes = []
    if getattr(request, "negative_prompt", "") and not family.supports("negative_prompt"):
        request = dataclasses.replace(request, negative_prompt="")
        notes.append(f"Negative prompt ignored: {family.missing['negative_prompt']}.")
    if (getattr(request, "clip_skip", None) or 1) > 1 and not family.supports("clip_skip"):
        request = dataclasses.replace(request, clip_skip=None)
        notes.append(f"Clip skip ignored: {family.missing['clip_skip']}.")
    return request, notes


def unknown_pipeline_message(model_name: str, pipeline_class: str) -> str:
    """What a diffusers folder or hub id of a pipeline outside the registry is refused with."""
    known = ", ".join(f"{cls} ({family.label})" for family in FAMILIES.values()
                      if family.denoiser_class.endswith("Transformer2DModel") for cls in family.pipeline_classes)
    return (f"{model_name} ({pipeline_class}) is not a checkpoint family ldm-ui knows; it looked for a text-to-image "
            f"pipeline with a U-Net (SD 1.x, 2.x, SDXL) or one of: {known}")
