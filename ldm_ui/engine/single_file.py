"""Single-file checkpoints (the original LDM layout AUTOMATIC1111 users have) -> diffusers pipelines, offline.

1. The .safetensors header is validated and read (names, dtypes, shapes; never the tensors).
2. The architecture is recognized from the tensor names and shapes: SD1.x, SD2.x, SDXL base, and their
   9-channel inpainting variants.
3. A diffusers-format config folder is derived: the family's config shipped in configs/<family>.json, with every
   shape-dependent field read from the weights, plus a CLIP tokenizer built from a package file. It lands in
   cache_dir/single-file-configs/<hash>/, named by its content, so every standard SD1.5 fine-tune shares one.
4. diffusers' public `from_single_file(path, config=<that folder>, local_files_only=True)` converts and loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ldm_ui.engine.checkpoint_files import TensorInfo, pickle_to_safetensors, read_safetensors_header
from ldm_ui.engine.models import PICKLE_SUFFIXES, SINGLE_FILE_SUFFIXES, ModelError

log = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_FORMAT_VERSION = 1  # bump when the derived folder's layout changes, so stale cached folders are not reused

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD1_TEXT = "cond_stage_model.transformer.text_model."
SD2_TEXT = "cond_stage_model.model."
SDXL_TEXT_1 = "conditioner.embedders.0.transformer.text_model."
SDXL_TEXT_2 = "conditioner.embedders.1.model."
SDXL_REFINER_TEXT = "conditioner.embedders.0.model."
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
EXPECTED_LAYOUTS = ("an SD1.x, SD2.x or SDXL base checkpoint in the original (LDM) layout: UNet under "
                    f"'{UNET}', VAE under '{VAE}', text encoder under '{SD1_TEXT}' (SD1.x), '{SD2_TEXT}' (SD2.x) "
                    "or 'conditioner.embedders.0/1.' (SDXL)")


@dataclass(frozen=True)
class Architecture:
    family: str  # sd1 | sd2 | sdxl
    inpainting: bool
    prediction_type: str  # epsilon | v_prediction
    sample_size: int  # latent size; pixels = 8x
    prediction_source: str  # why that prediction type: what a user needs to know when images look wrong

    def describe(self) -> str:
        kind = " inpainting" if self.inpainting else ""
        return f"{FAMILY_NAMES[self.family]}{kind} ({self.prediction_type}, {self.sample_size * 8} px)"


# ---- recognizing the architecture


def detect_architecture(path: Path, tensors: dict[str, TensorInfo]) -> Architecture:
    """The architecture a checkpoint's tensor names and shapes describe; ModelError for anything else."""
    path = Path(path)
    keys = tensors.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    conv_in = tensors.get(UNET + "input_blocks.0.0.weight")
    if conv_in is None:
        raise ModelError(f"{path.name} is not a full Stable Diffusion checkpoint{_not_a_checkpoint_hint(keys)}; "
                         f"expected {EXPECTED_LAYOUTS}")
    if has(SDXL_REFINER_TEXT) and not has(SDXL_TEXT_1):
        raise ModelError(f"{path.name} is an SDXL refiner, which is not supported; expected {EXPECTED_LAYOUTS}")
    if has(SDXL_TEXT_2):
        if not has(SDXL_TEXT_1):
            raise ModelError(f"{path.name} looks like SDXL but lacks its first text encoder ('{SDXL_TEXT_1}*')")
        family = "sdxl"
    elif has(SD2_TEXT):
        family = "sd2"
    elif has(SD1_TEXT):
        family = "sd1"
    else:
        raise ModelError(f"{path.name} has a UNet but no text encoder it can use; expected {EXPECTED_LAYOUTS}")
    if not has(VAE + "encoder.") or not has(VAE + "decoder."):
        raise ModelError(f"{path.name} has no VAE ('{VAE}encoder.*' and 'decoder.*'); only checkpoints with their "
                         "VAE baked in are supported")
    in_channels = conv_in.shape[1] if len(conv_in.shape) == 4 else -1
    if in_channels not in (4, 9):
        raise ModelError(f"{path.name}: a UNet with {in_channels} input channels is not supported; supported are 4 "
                         "(text-to-image) and 9 (inpainting); depth (5) and instruct-pix2pix (8) models are not")
    inpainting = in_channels == 9
    prediction, source = _prediction_type(path, tensors, family, inpainting)
    if family == "sdxl":
        sample_size = 128
    elif family == "sd2" and prediction == "v_prediction":
        sample_size = 96  # SD2 768-v; the 512-px SD2 base and SD2 inpainting are epsilon models
    else:
        sample_size = 64
    return Architecture(family, inpainting, prediction, sample_size, source)


def _not_a_checkpoint_hint(keys) -> str:
    sample = list(keys)[:2000]
    if any("lora_" in k or ".lora." in k or "lora_up" in k for k in sample):
        return " (it is a LoRA: put it in models/Lora)"
    if any(k.startswith(("encoder.conv_in", "decoder.conv_in")) for k in sample):
        return " (it is a standalone VAE)"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in sample):
        return " (it is a diffusers-format UNet, not a whole model: use a diffusers folder in models/diffusers)"
    if any(k.startswith(("double_blocks.", "joint_blocks.", "model.diffusion_model.double_blocks",
                         "model.diffusion_model.joint_blocks")) for k in sample):
        return " (it is a Flux or SD3 transformer model, which is not supported)"
    return ""


def _prediction_type(path: Path, tensors, family: str, inpainting: bool) -> tuple[str, str]:
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ModelError(f"cannot read the config {path.name} beside the checkpoint: {error}") from error
    params = data.get("model", {}).get("params", {}) if isinstance(data, dict) else None
    if not isinstance(params, dict):
        raise ModelError(f"{path.name} has no model.params section; expected an LDM config such as v2-inference-v.yaml")
    parameterization = params.get("parameterization", "eps")
    if parameterization not in ("eps", "v"):
        raise ModelError(f"{path.name}: parameterization {parameterization!r} is not supported; allowed: eps, v")
    return "v_prediction" if parameterization == "v" else "epsilon"


# ---- deriving the diffusers configs from the shapes


def family_defaults(family: str) -> dict:
    return json.loads((CONFIGS_DIR / f"{family}.json").read_text(encoding="utf-8"))


def derive_configs(path: Path, arch: Architecture, tensors: dict[str, TensorInfo]) -> dict:
    """The family's shipped configs with every field the shapes determine read from the checkpoint."""
    path = Path(path)
    configs = family_defaults(arch.family)
    reader = _ShapeReader(path, tensors)
    pipeline_class = configs["inpaint_pipeline_class" if arch.inpainting else "pipeline_class"]
    configs["model_index"]["_class_name"] = pipeline_class
    configs["unet"] = _unet_config(reader, configs["unet"], arch)
    configs["vae"] = _vae_config(reader, configs["vae"], arch)
    configs["scheduler"]["prediction_type"] = arch.prediction_type
    if arch.family == "sd1":
        configs["text_encoder"] = _hf_clip_config(reader, SD1_TEXT, configs["text_encoder"])
    elif arch.family == "sd2":
        # SD2 conditions on the penultimate layer: diffusers keeps all but the last block and skips its weights
        configs["text_encoder"] = _open_clip_config(reader, SD2_TEXT, configs["text_encoder"], drop_last_layer=True)
    else:
        configs["text_encoder"] = _hf_clip_config(reader, SDXL_TEXT_1, configs["text_encoder"])
        configs["text_encoder_2"] = _open_clip_config(reader, SDXL_TEXT_2, configs["text_encoder_2"])
    text_width = sum(configs[name]["hidden_size"] for name in ("text_encoder", "text_encoder_2") if name in configs)
    if configs["unet"]["cross_attention_dim"] != text_width:
        raise ModelError(
            f"{path.name} is inconsistent: its UNet expects text features of width "
            f"{configs['unet']['cross_attention_dim']} but its text encoder(s) give {text_width}"
        )
    return configs


class _ShapeReader:
    def __init__(self, path: Path, tensors: dict[str, TensorInfo]):
        self.path, self.tensors = path, tensors

    def shape(self, key: str, rank: int | None = None) -> tuple[int, ...]:
        info = self.tensors.get(key)
        if info is None:
            raise ModelError(f"{self.path.name} is missing tensor {key!r}, which its architecture requires")
        if rank is not None and len(info.shape) != rank:
            raise ModelError(
                f"{self.path.name}: tensor {key!r} has shape {list(info.shape)}, expected {rank} dimensions")
        return info.shape

    def has(self, key: str) -> bool:
        return key in self.tensors

    def count(self, prefix: str) -> int:
        """How many numbered children `prefix<N>.` has (N = 0, 1, ... without gaps)."""
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        found = {int(m.group(1)) for k in self.tensors if (m := pattern.match(k))}
        return max(found) + 1 if found and found == set(range(max(found) + 1)) else len(found)


def _unet_config(reader: _ShapeReader, base: dict, arch: Architecture) -> dict:
    config = dict(base)
    name = reader.path.name
    conv_in = reader.shape(UNET + "input_blocks.0.0.weight", 4)
    config["in_channels"] = conv_in[1]
    config["out_channels"] = reader.shape(UNET + "out.2.weight", 4)[0]
    # input_blocks 1.. are resnet(+attention) layers per level, with one downsampler ('.0.op') closing each level
    levels: list[list[tuple[int, int]]] = [[]]
    for index in range(1, reader.count(UNET + "input_blocks.")):
        block = f"{UNET}input_blocks.{index}."
        if reader.has(block + "0.op.weight"):
            levels.append([])
            continue
        channels = reader.shape(block + "0.out_layers.3.weight", 4)[0]
        levels[-1].append((channels, reader.count(block + "1.transformer_blocks.")))
    if not levels[0] or any(len(level) != len(levels[0]) for level in levels):
        raise ModelError(f"{name}: UNet levels have {[len(level) for level in levels]} layers; expected the same "
                         "number in every level")
    config["layers_per_block"] = len(levels[0])
    config["block_out_channels"] = [level[0][0] for level in levels]
    depths = [level[0][1] for level in levels]
    config["down_block_types"] = ["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in depths]
    config["up_block_types"] = ["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(depths)]
    mid_depth = reader.count(UNET + "middle_block.1.transformer_blocks.")
    if mid_depth == 0:
        raise ModelError(f"{name}: the UNet's middle block has no attention; expected {EXPECTED_LAYOUTS}")
    if len(set(d for d in depths if d) | {mid_depth}) > 1 or arch.family == "sdxl":
        config["transformer_layers_per_block"] = [d or 1 for d in depths]
        if mid_depth != config["transformer_layers_per_block"][-1]:
            raise ModelError(f"{name}: the middle block has {mid_depth} transformer layers but the last level has "
                             f"{depths[-1]}; diffusers' UNet needs them equal")
    else:
        config.pop("transformer_layers_per_block", None)
    first_attention = next((f"{UNET}input_blocks.{i}.1." for i in range(1, reader.count(UNET + "input_blocks."))
                            if reader.has(f"{UNET}input_blocks.{i}.1.proj_in.weight")), None)
    if first_attention is None:
        raise ModelError(f"{name}: the UNet has no cross-attention layers; expected {EXPECTED_LAYOUTS}")
    config["cross_attention_dim"] = reader.shape(first_attention + "transformer_blocks.0.attn2.to_k.weight", 2)[1]
    config["use_linear_projection"] = len(reader.shape(first_attention + "proj_in.weight")) == 2
    if arch.family == "sdxl":
        config["projection_class_embeddings_input_dim"] = reader.shape(UNET + "label_emb.0.0.weight", 2)[1]
    elif reader.has(UNET + "label_emb.0.0.weight"):
        raise ModelError(f"{name}: a class-conditioned UNet (label_emb) is not supported outside SDXL")
    config["sample_size"] = arch.sample_size
    config["attention_head_dim"] = _heads_per_level(name, base["attention_head_dim"], config["block_out_channels"])
    groups = config["norm_num_groups"]
    if any(c % groups for c in config["block_out_channels"]):
        raise ModelError(f"{name}: UNet channels {config['block_out_channels']} must be multiples of {groups} "
                         "(the group-norm size of the architecture)")
    return config


def _heads_per_level(name: str, default, channels: list[int]):
    """Head counts cannot be read from shapes: keep the family's, stretched to the number of levels."""
    heads = default if isinstance(default, int) else [default[min(i, len(default) - 1)] for i in range(len(channels))]
    per_level = [heads] * len(channels) if isinstance(heads, int) else heads
    for width, count in zip(channels, per_level):
        if width % count:
            raise ModelError(f"{name}: UNet level width {width} cannot be split into {count} attention heads "
                             "(the architecture's head count)")
    return heads


def _vae_config(reader: _ShapeReader, base: dict, arch: Architecture) -> dict:
    config = dict(base)
    conv_in = reader.shape(VAE + "encoder.conv_in.weight", 4)
    levels = reader.count(VAE + "encoder.down.")
    config["in_channels"] = conv_in[1]
    config["out_channels"] = reader.shape(VAE + "decoder.conv_out.weight", 4)[0]
    config["latent_channels"] = reader.shape(VAE + "decoder.conv_in.weight", 4)[1]
    config["layers_per_block"] = reader.count(VAE + "encoder.down.0.block.")
    config["block_out_channels"] = [reader.shape(f"{VAE}encoder.down.{i}.block.0.conv2.weight", 4)[0]
                                    for i in range(levels)]
    config["down_block_types"] = ["DownEncoderBlock2D"] * levels
    config["up_block_types"] = ["UpDecoderBlock2D"] * levels
    config["sample_size"] = arch.sample_size * 8
    if any(c % config["norm_num_groups"] for c in config["block_out_channels"]):
        raise ModelError(f"{reader.path.name}: VAE channels {config['block_out_channels']} must be multiples of "
                         f"{config['norm_num_groups']}")
    return config


def _hf_clip_config(reader: _ShapeReader, prefix: str, base: dict) -> dict:
    vocab, hidden = reader.shape(prefix + "embeddings.token_embedding.weight", 2)
    return _clip_config(reader, base, vocab=vocab, hidden=hidden,
                        positions=reader.shape(prefix + "embeddings.position_embedding.weight", 2)[0],
                        layers=reader.count(prefix + "encoder.layers."),
                        intermediate=reader.shape(prefix + "encoder.layers.0.mlp.fc1.weight", 2)[0])


def _open_clip_config(reader: _ShapeReader, prefix: str, base: dict, drop_last_layer: bool = False) -> dict:
    vocab, hidden = reader.shape(prefix + "token_embedding.weight", 2)
    layers = reader.count(prefix + "transformer.resblocks.")
    config = _clip_config(reader, base, vocab=vocab, hidden=hidden,
                          positions=reader.shape(prefix + "positional_embedding", 2)[0],
                          layers=layers - 1 if drop_last_layer else layers,
                          intermediate=reader.shape(prefix + "transformer.resblocks.0.mlp.c_fc.weight", 2)[0])
    if reader.has(prefix + "text_projection") and not drop_last_layer:
        config["projection_dim"] = reader.shape(prefix + "text_projection", 2)[1]
    return config


def _clip_config(reader: _ShapeReader, base: dict, *, vocab: int, hidden: int, positions: int, layers: int,
                 intermediate: int) -> dict:
    from ldm_ui.engine.clip_vocab import CLIP_VOCAB_SIZE

    name = reader.path.name
    if vocab != CLIP_VOCAB_SIZE:
        raise ModelError(f"{name}: its text encoder has a vocabulary of {vocab} tokens; only CLIP's "
                         f"{CLIP_VOCAB_SIZE}-token BPE vocabulary is supported")
    if layers < 1:
        raise ModelError(f"{name}: its text encoder has no transformer layers")
    if hidden % base["num_attention_heads"]:
        raise ModelError(f"{name}: text encoder width {hidden} cannot be split into the architecture's "
                         f"{base['num_attention_heads']} attention heads")
    config = dict(base)
    config.update(vocab_size=vocab, hidden_size=hidden, max_position_embeddings=positions, num_hidden_layers=layers,
                  intermediate_size=intermediate)
    if base.get("projection_dim") == base.get("hidden_size"):
        config["projection_dim"] = hidden
    return config


# ---- the config folder diffusers reads


def config_folder(configs: dict, cache_dir: Path) -> Path:
    """cache_dir/single-file-configs/<hash of the configs>/, a diffusers pipeline folder without weights."""
    text = json.dumps({"format": CONFIG_FORMAT_VERSION, **configs}, sort_keys=True)
    folder = Path(cache_dir) / "single-file-configs" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if (folder / "model_index.json").is_file():
        return folder
    from ldm_ui.engine.clip_vocab import save_clip_tokenizer

    partial = folder.with_name(folder.name + f".{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for name, data in configs["model_index"].items():
            if not isinstance(data, list) or data[0] is None:
                continue
            (partial / name).mkdir(parents=True)
            if name.startswith("tokenizer"):
                encoder = configs["text_encoder_2" if name == "tokenizer_2" else "text_encoder"]
                max_length = encoder["max_position_embeddings"]
                save_clip_tokenizer(partial / name, cache_dir, configs[name]["pad_token"], max_length)
            else:
                file_name = "scheduler_config.json" if name == "scheduler" else "config.json"
                (partial / name / file_name).write_text(json.dumps(configs[name], indent=2))
        (partial / "model_index.json").write_text(json.dumps(configs["model_index"], indent=2))
        try:
            os.replace(partial, folder)
        except OSError:  # another process wrote the same folder first: its content is identical
            if not (folder / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


# ---- loading


def load_single_file(path: Path, config, dtype):
    """A diffusers pipeline from one checkpoint file, with no network. `config` is the app's AppConfig."""
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
    arch = detect_architecture(path, tensors)
    configs = derive_configs(path, arch, tensors)
    folder = config_folder(configs, config.cache_dir)
    log.info("%s: %s, prediction type from %s; configs in %s",
             path.name, arch.describe(), arch.prediction_source, folder)
    pipeline_class = getattr(diffusers, configs["model_index"]["_class_name"])
    try:
        pipe = pipeline_class.from_single_file(str(path_to_load), config=str(folder), local_files_only=True,
                                               torch_dtype=dtype)
    except ModelError:
        raise
    except Exception as error:  # noqa: BLE001 - conversion failures come in many types; all mean "cannot load this"
        raise ModelError(f"could not load {path.name} as {arch.describe()}: {error}") from error
    _check_every_weight_loaded(pipe, path)
    return pipe


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
