"""Single-file checkpoints (the original layouts AUTOMATIC1111 and ComfyUI users have) -> diffusers pipelines, offline.

diffusers' `from_single_file` converts every family's original key layout itself; what it needs from us is a
config folder, which it would otherwise download. So this module only:
1. validates the .safetensors header (checkpoint_files.py; an opted-in pickle is converted to .safetensors first),
2. recognizes the family and variant from the tensor names and shapes (`recognize`),
3. copies that variant's shipped config folder (configs/<variant>/, JSON only) into the cache, with the CLIP
   tokenizer files built from a package file (clip_vocab.py) and the prediction type a sidecar .yaml asks for,
4. calls the pipeline class's `from_single_file(path, config=<that folder>, local_files_only=True)`; for a FLUX.1
   file, which holds only the transformer, the transformer class's `from_single_file` and the rest of the pipeline
   from the user's FLUX.1 diffusers folder (base_components.py: its T5 tokenizer cannot be made offline).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from ldm_ui.engine.base_components import base_folder, load_with_base
from ldm_ui.engine.checkpoint_files import TensorInfo, pickle_to_safetensors, read_safetensors_header
from ldm_ui.engine.clip_vocab import save_clip_tokenizer
from ldm_ui.engine.model_types import PICKLE_SUFFIXES, SINGLE_FILE_SUFFIXES, ModelError

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_FORMAT_VERSION = 2  # bump when the cached folder's layout changes, so stale folders are not reused

UNET_CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
MMDIT = "model.diffusion_model.joint_blocks.0."
FLUX = "model.diffusion_model.double_blocks.0."
VAE = "first_stage_model.decoder.conv_in.weight"
SD1_TEXT = "cond_stage_model.transformer."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT_1 = "conditioner.embedders.0.transformer."
SDXL_TEXT_2 = "conditioner.embedders.1.model."
SDXL_REFINER_TEXT = "conditioner.embedders.0.model."
SD3_TEXTS = ("text_encoders.clip_l.transformer.", "text_encoders.clip_g.transformer.")
SD3_T5 = "text_encoders.t5xxl.transformer."
LOOKED_FOR = (f"'{UNET_CONV_IN}' with '{SD1_TEXT}*' (SD1.x), '{SD2_TEXT}*' (SD2.x) or '{SDXL_TEXT_2}*' (SDXL); "
              f"'{MMDIT}*' (SD3/SD3.5); '{FLUX}*' (FLUX.1)")


@dataclass(frozen=True)
class Variant:
    folder: str  # configs/<folder>/: the diffusers config folder of this variant
    label: str  # what a user reads in messages and logs
    family: str  # sd1 | sd2 | sdxl | sd3 | flux: the family registry's row (engine/families.py)
    prediction_type: str | None = None  # overrides the folder's scheduler (UNet families only)
    prediction_source: str = "the family's default"
    skip_components: tuple[str, ...] = ()  # listed in the folder's model_index but not loaded
    transformer_only: bool = False  # the rest of the pipeline comes from a diffusers folder of the family


# ---- recognizing the family from the header


def recognize(path: Path, tensors: dict[str, TensorInfo]) -> Variant:
    """The variant a checkpoint's tensor names and shapes describe; ModelError naming what was looked for."""
    path = Path(path)
    keys = tensors.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has(MMDIT) or has(MMDIT.removeprefix("model.diffusion_model.")):
        return _sd3_variant(path, tensors, has)
    if has(FLUX) or has(FLUX.removeprefix("model.diffusion_model.")):
        return _flux_variant(path, tensors, has)
    conv_in = tensors.get(UNET_CONV_IN)
    if conv_in is None:
        raise ModelError(f"{path.name} is not a checkpoint family ldm-ui knows{_hint(keys)}; it looked for "
                         f"{LOOKED_FOR}")
    if has(SDXL_TEXT_2):
        if not has(SDXL_TEXT_1):
            raise ModelError(f"{path.name} looks like SDXL but lacks its first text encoder ('{SDXL_TEXT_1}*')")
        family, label = "sdxl", "SDXL"
    elif has(SDXL_REFINER_TEXT):
        raise ModelError(f"{path.name} is an SDXL refiner single file; ldm-ui loads a refiner (the Refiner "
                         "accordion of txt2img and img2img) from a diffusers folder in models/diffusers or a hub id "
                         "such as stabilityai/stable-diffusion-xl-refiner-1.0, not from a single file yet, and a "
                         "refiner cannot be the model itself (it cannot make an image from a prompt)")
    elif has(SD2_TEXT):
        family, label = "sd2", "SD2.x"
    elif has(SD1_TEXT):
        family, label = "sd1", "SD1.x"
    else:
        raise ModelError(f"{path.name} has a UNet but no text encoder ldm-ui knows; it looked for {LOOKED_FOR}")
    if VAE not in tensors:
        raise ModelError(f"{path.name} has no VAE ('{VAE}'); only checkpoints with their VAE baked in are supported")
    in_channels = conv_in.shape[1] if len(conv_in.shape) == 4 else -1
    if in_channels not in (4, 9):
        raise ModelError(f"{path.name}: a UNet with {in_channels} input channels is not supported; supported are 4 "
                         "(text-to-image) and 9 (inpainting); depth (5) and instruct-pix2pix (8) models are not")
    prediction, source = _prediction_type(path, tensors, family, in_channels == 9)
    if in_channels == 9:
        return Variant(f"{family}-inpaint", f"{label} inpainting", family, prediction, source)
    if family == "sd2":  # 768-px v-prediction (SD2.x) or the 512-px epsilon base: different native sizes
        folder = "sd2-v" if prediction == "v_prediction" else "sd2-base"
        size = 768 if folder == "sd2-v" else 512
        return Variant(folder, f"{label} ({prediction}, {size} px)", family, prediction, source)
    return Variant(family, label, family, prediction, source)


def _sd3_variant(path: Path, tensors: dict[str, TensorInfo], has) -> Variant:
    prefix = MMDIT if has(MMDIT) else MMDIT.removeprefix("model.diffusion_model.")
    if has(prefix + "x_block.attn2."):  # MMDiT-X: a second self-attention in the first blocks
        folder, label = "sd35-medium", "SD3.5 Medium"
    elif has(prefix + "x_block.attn.ln_q."):  # query/key RMS norms without the second attention
        folder, label = "sd35-large", "SD3.5 Large"
    else:
        folder, label = "sd3", "SD3 Medium"
    missing = [p for p in (*SD3_TEXTS, "first_stage_model.") if not has(p)]
    if missing:
        raise ModelError(
            f"{path.name} holds the {label} transformer but not {', '.join(repr(m + '*') for m in missing)}; "
            "ldm-ui loads SD3 files that include their CLIP text encoders and VAE (such as "
            "sd3_medium_incl_clips.safetensors), or a diffusers folder")
    # T5 needs a SentencePiece tokenizer no installed package ships: SD3 runs without it, as diffusers allows
    if has(SD3_T5):
        log.info("%s: its T5-XXL text encoder is skipped (no T5 tokenizer offline); prompts use the CLIP encoders",
                 path.name)
    return Variant(folder, label, "sd3", skip_components=("text_encoder_3", "tokenizer_3"))


def _flux_variant(path: Path, tensors: dict[str, TensorInfo], has) -> Variant:
    """FLUX.1-dev (guidance embedder) or -schnell (none), as diffusers tells them apart; Fill and Depth (more input
    channels) need pipelines ldm-ui does not offer."""
    prefix = "model.diffusion_model." if has(FLUX) else ""
    img_in = tensors.get(prefix + "img_in.weight")
    channels = img_in.shape[1] if img_in is not None and len(img_in.shape) == 2 else 64
    if channels != 64:
        kind = {384: "FLUX.1 Fill", 128: "FLUX.1 Depth/Canny"}.get(channels, f"a Flux with {channels} input channels")
        raise ModelError(f"{path.name} is {kind}, which needs its own pipeline; ldm-ui loads FLUX.1-dev and "
                         "-schnell transformers (64 input channels)")
    rest = ("vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")  # from the family's folder
    if has(prefix + "guidance_in."):
        return Variant("flux-dev", "FLUX.1-dev", "flux", skip_components=rest, transformer_only=True)
    return Variant("flux-schnell", "FLUX.1-schnell", "flux", skip_components=rest, transformer_only=True)


def _hint(keys) -> str:
    sample = list(keys)[:2000]
    if any("lora_" in k or ".lora." in k or "lora_up" in k for k in sample):
        return " (it is a LoRA: put it in models/Lora)"
    if any(k.startswith(("encoder.conv_in", "decoder.conv_in")) for k in sample):
        return " (it is a standalone VAE)"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in sample):
        return " (it is a diffusers-format UNet, not a whole model: use a diffusers folder in models/diffusers)"
    return ""


def _prediction_type(path: Path, tensors, family: str, inpainting: bool) -> tuple[str, str]:
    """diffusers cannot tell v from epsilon by the weights; read what the user or the trainer said."""
    sidecar = path.with_suffix(".yaml")
    if sidecar.is_file():
        return _prediction_from_yaml(sidecar), f"from {sidecar.name}"
    if "v_pred" in tensors:  # marker key some trainers (and ComfyUI) write into v-prediction checkpoints
        return "v_prediction", "the checkpoint's v_pred marker"
    if family == "sd2" and not inpainting:
        # SD2 768 models are v-prediction; the header cannot tell them from the 512 base, so do as AUTOMATIC1111
        return "v_prediction", (f"the SD2.x default (for a 512-px epsilon model put a {sidecar.name} "
                                "without 'parameterization: v' beside it)")
    return "epsilon", "the default"


def _prediction_from_yaml(path: Path) -> str:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ModelError(f"cannot read {path.name}: {error}") from error
    params = (data.get("model") or {}).get("params") or {} if isinstance(data, dict) else {}
    parameterization = params.get("parameterization", "eps")
    if parameterization not in ("eps", "v"):
        raise ModelError(f"{path.name}: parameterization {parameterization!r} is not supported; allowed: eps, v")
    return "v_prediction" if parameterization == "v" else "epsilon"


# ---- the config folder diffusers reads


def config_folder(variant: Variant, cache_dir: Path, configs_root: Path = CONFIGS_DIR) -> Path:
    """cache_dir/single-file-configs/<variant>-<hash>/: the shipped JSON folder plus tokenizer files."""
    source = Path(configs_root) / variant.folder
    if not (source / "model_index.json").is_file():
        raise ModelError(f"ldm-ui's config folder for {variant.label} is missing ({source}); reinstall ldm-ui")
    files = sorted(p for p in source.rglob("*.json") if p.is_file())
    digest = hashlib.sha256(f"{CONFIG_FORMAT_VERSION}|{variant.prediction_type}".encode())
    for file in files:
        digest.update(file.relative_to(source).as_posix().encode() + b"\0" + file.read_bytes())
    folder = Path(cache_dir) / "single-file-configs" / f"{variant.folder}-{digest.hexdigest()[:12]}"
    if (folder / "model_index.json").is_file():
        return folder
    partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for file in files:
            target = partial / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        index = json.loads((source / "model_index.json").read_text(encoding="utf-8"))
        for name, entry in index.items():
            if isinstance(entry, list) and entry[1] == "CLIPTokenizer" and name not in variant.skip_components:
                _write_clip_tokenizer(partial / name, cache_dir)
        if variant.prediction_type:
            scheduler = partial / "scheduler" / "scheduler_config.json"
            settings = json.loads(scheduler.read_text(encoding="utf-8"))
            settings["prediction_type"] = variant.prediction_type
            scheduler.write_text(json.dumps(settings, indent=2))
        try:
            os.replace(partial, folder)
        except OSError:  # another process wrote the same folder first: its content is identical
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def _write_clip_tokenizer(folder: Path, cache_dir: Path) -> None:
    settings = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    pad = settings.get("pad_token", "<|endoftext|>")
    pad = pad.get("content") if isinstance(pad, dict) else pad
    save_clip_tokenizer(folder, cache_dir, pad_token=pad, model_max_length=int(settings.get("model_max_length", 77)))


# ---- loading


def load_single_file(path: Path, config, dtype, configs_root: Path = CONFIGS_DIR):
    """A diffusers pipeline from one checkpoint file, with no network, and the variant it was recognized as.
    `config` is the app's AppConfig."""
    import diffusers

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not config.allow_pickle:
            raise ModelError(
                f"{path.name} is a pickle checkpoint, which can run code when loaded; convert it to .safetensors, "
                "or start the app with --allow-pickle to load it with torch.load(weights_only=True)"
            )
        path_to_load = pickle_to_safetensors(path, config.cache_dir)
    elif suffix in SINGLE_FILE_SUFFIXES:
        path_to_load = path
    else:
        raise ModelError(f"{path.name}: unsupported checkpoint type {suffix!r}; allowed: "
                         f"{', '.join(SINGLE_FILE_SUFFIXES + PICKLE_SUFFIXES)}")
    tensors = read_safetensors_header(path_to_load)
    variant = recognize(path, tensors)
    folder = config_folder(variant, config.cache_dir, configs_root)
    log.info("%s: %s (prediction type from %s); configs in %s", path.name, variant.label, variant.prediction_source,
             folder)
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    pipeline_class = getattr(diffusers, index["_class_name"])
    skipped = {name: None for name in variant.skip_components}
    base = None
    if variant.transformer_only:
        base = base_folder(config.diffusers_dir(), variant.family, path.name, variant.label,
                           "its VAE and text encoders (CLIP-L, and T5-XXL with its SentencePiece tokenizer)")
    try:
        if base is not None:
            log.info("%s: transformer from the file, the other components from %s", path.name, base.name)
            pipe = load_with_base(path_to_load, folder, base, dtype, config.allow_pickle)
        else:
            pipe = pipeline_class.from_single_file(str(path_to_load), config=str(folder), local_files_only=True,
                                                   torch_dtype=dtype, **skipped)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - conversion failures come in many types; all mean "cannot load this"
        raise ModelError(f"could not load {path.name} as {variant.label} (configs/{variant.folder}): "
                         f"{str(error)[:500]}") from error
    _check_every_weight_loaded(pipe, path)
    return pipe, variant


def _check_every_weight_loaded(pipe, path: Path) -> None:
    """from_single_file leaves weights the file lacks on the 'meta' device; catch that here, not mid-generation."""
    import torch

    for name, component in pipe.components.items():
        if not isinstance(component, torch.nn.Module):
            continue
        missing = [n for n, p in [*component.named_parameters(), *component.named_buffers()] if p.device.type == "meta"]
        if missing:
            raise ModelError(f"{path.name} lacks {len(missing)} weights of its {name} (e.g. {', '.join(missing[:3])}); "
                             "the file is incomplete or of an unsupported variant")
