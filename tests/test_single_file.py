"""Single-file checkpoints through diffusers' own loader: each family's file, laid out as the official converters
write it, loads offline to the same pixels as the diffusers folder it came from; the header decides the family;
damaged files, pickles and unknown families are refused with clear messages."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ldm_layout import fake_ldm_tensors, sd1_pipeline_to_ldm, unet_to_ldm, vae_to_ldm
from ldm_ui.config import AppConfig, config_from_args
from ldm_ui.engine.checkpoint_files import TensorInfo, read_safetensors_header
from ldm_ui.engine.models import ModelError, ModelManager
from ldm_ui.engine.single_file import CONFIGS_DIR, load_single_file, recognize
from ldm_ui.requests import RequestError, Txt2ImgRequest
from original_layouts import (
    SD2_TEXT, hf_clip_to_prefix, mmdit_to_original, open_clip_to_ldm, sd2_pipeline_to_ldm, sd3_pipeline_to_original,
    sdxl_pipeline_to_ldm,
)
from tiny_families import build_sd1, build_sd2, build_sd3, build_sdxl, family_configs

REFERENCE = "tiny-sd1"
SINGLE = "tiny.safetensors"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the module, so the CLIP tokenizer files are built once."""
    return tmp_path_factory.mktemp("single-file-cache")


@pytest.fixture(scope="module")
def families(tmp_path_factory) -> Path:
    """Config folders for the tiny models, laid out like ldm_ui/engine/configs (one per variant)."""
    return tmp_path_factory.mktemp("tiny-family-configs")


@pytest.fixture(scope="module")
def sd1_files(tmp_path_factory, shared_cache, families):
    """A models folder with the tiny SD1-layout model twice: as a diffusers folder and as an LDM single file."""
    root = tmp_path_factory.mktemp("single-file-models")
    pipe = build_sd1(root / "diffusers" / REFERENCE, shared_cache)
    family_configs(root / "diffusers" / REFERENCE, families, "sd1")
    state = sd1_pipeline_to_ldm(pipe)
    (root / "Stable-diffusion").mkdir()
    save_file(state, str(root / "Stable-diffusion" / SINGLE))
    return {"models": root, "pipe": pipe, "state": state, "file": root / "Stable-diffusion" / SINGLE}


def make_config(models_dir: Path, cache_dir: Path, tmp_path: Path, **changes) -> AppConfig:
    return AppConfig(models_dir=models_dir, outputs_dir=tmp_path / "outputs", cache_dir=cache_dir,
                     default_model=REFERENCE, **changes)


def manager_for(config: AppConfig, families: Path) -> ModelManager:
    manager = ModelManager(config)
    manager.single_file_configs = families  # the tiny models' sizes; real files use the shipped folders
    return manager


def generate(engine, model: str) -> np.ndarray:
    request = Txt2ImgRequest(prompt="a red circle on a blue square", negative_prompt="blurry", model=model,
                             sampler="Euler", steps=3, cfg_scale=5.0, width=64, height=64, seed=1234,
                             preview_method="off")
    return np.asarray(engine.generate(request, timeout=300).images[0], dtype=np.int16)


def pixels(pipe, **extra) -> np.ndarray:
    images = pipe(prompt="a red circle", negative_prompt="blurry", num_inference_steps=2, width=64, height=64,
                  generator=torch.Generator().manual_seed(7), output_type="np", **extra).images
    return (images[0] * 255).round().astype(np.int16)


# ---- loading a user's file


def test_sd1_file_gives_the_same_pixels_as_its_diffusers_folder_through_the_engine(sd1_files, shared_cache, families,
                                                                                  tmp_path):
    from ldm_ui.engine.engine import Engine

    engine = Engine(make_config(sd1_files["models"], shared_cache, tmp_path)).start()
    engine.models.single_file_configs = families
    try:
        assert SINGLE in engine.models.model_names()
        reference = generate(engine, REFERENCE)
        from_file = generate(engine, SINGLE)
        loaded = engine.models.current
    finally:
        engine.shutdown()
    assert loaded.entry.kind == "single_file" and loaded.family == "sd1"
    assert len(loaded.model_hash) == 10  # AUTOMATIC1111's short hash of the file, for the infotext
    # bit-equal weights can still round differently once the engine switches kernels for tiny models
    assert np.abs(reference - from_file).max() <= 1
    assert reference.std() > 1  # a real picture, not a flat fill that would match anything


def _extra_open_clip_block(state: dict, prefix: str, layers: int) -> dict:
    """The 24th block original SD2 checkpoints carry and SD2 never uses (it conditions on the penultimate layer)."""
    extra = {k.replace(f"resblocks.{layers - 1}.", f"resblocks.{layers}."): torch.randn_like(v)
             for k, v in state.items() if k.startswith(f"{prefix}transformer.resblocks.{layers - 1}.")}
    return {**state, **extra}


FAMILY_CASES = {
    # name: (variant folder, build, to the original layout, sidecar yaml)
    "SD2 v, 3 OpenCLIP blocks as the official converter writes them": (
        "sd2-v", lambda f, c: build_sd2(f, c, text_layers=3), sd2_pipeline_to_ldm, None),
    "SD2 v, plus the unused last block of original checkpoints": (
        "sd2-v", lambda f, c: build_sd2(f, c, text_layers=3),
        lambda p: _extra_open_clip_block(sd2_pipeline_to_ldm(p), SD2_TEXT, 3), None),
    "SD2 epsilon (512 base) by its sidecar yaml": (
        "sd2-base", lambda f, c: build_sd2(f, c, text_layers=3, prediction_type="epsilon"), sd2_pipeline_to_ldm,
        "model:\n  params:\n    linear_start: 0.00085\n"),
    "SD1 inpainting (9-channel UNet)": (
        "sd1-inpaint", lambda f, c: build_sd1(f, c, in_channels=9), sd1_pipeline_to_ldm, None),
    "SDXL base": ("sdxl", build_sdxl, sdxl_pipeline_to_ldm, None),
    "SD3 Medium (MMDiT, CLIP-L and CLIP-G, no T5)": ("sd3", build_sd3, sd3_pipeline_to_original, None),
    "SD3.5 Medium (MMDiT-X: a second attention, qk norms)": (
        "sd35-medium", lambda f, c: build_sd3(f, c, qk_norm="rms_norm", dual_attention_layers=(0,)),
        sd3_pipeline_to_original, None),
    "SD3.5 Large (qk norms)": (
        "sd35-large", lambda f, c: build_sd3(f, c, qk_norm="rms_norm"), sd3_pipeline_to_original, None),
}


@pytest.mark.parametrize("case", list(FAMILY_CASES))
def test_each_family_loads_to_the_same_pixels_as_the_folder_it_came_from(case, shared_cache, families, tmp_path):
    variant, build, to_original, sidecar = FAMILY_CASES[case]
    reference = build(tmp_path / "reference", shared_cache)
    family_configs(tmp_path / "reference", families, variant)
    path = tmp_path / "Stable-diffusion" / "user-file.safetensors"
    path.parent.mkdir()
    save_file(to_original(reference), str(path))
    if sidecar:
        path.with_suffix(".yaml").write_text(sidecar)
    config = make_config(tmp_path / "models", shared_cache, tmp_path)
    assert recognize(path, read_safetensors_header(path)).folder == variant
    loaded, _ = load_single_file(path, config, torch.float32, families)
    assert type(loaded) is type(reference)
    assert loaded.scheduler.config.get("prediction_type") == reference.scheduler.config.get("prediction_type")
    extra = {}
    if variant.endswith("inpaint"):
        extra = {"image": torch.zeros(1, 3, 64, 64), "mask_image": torch.ones(1, 1, 64, 64)}
    for name, component in reference.components.items():
        if isinstance(component, torch.nn.Module):
            expected_state, got = component.state_dict(), getattr(loaded, name).state_dict()
            assert expected_state.keys() == got.keys(), name
            assert all(torch.equal(expected_state[k], got[k]) for k in expected_state), name
    expected = pixels(reference, **extra)
    assert np.abs(pixels(loaded, **extra) - expected).max() <= 1  # kernels may order float sums differently
    assert expected.std() > 1


# ---- the shipped config folders against real-size key layouts (meta tensors: no memory)

DIFFUSERS_MODEL_TYPES = {"sd1": "v1", "sd1-inpaint": "inpainting", "sd2-v": "v2", "sd2-base": "v2",
                         "sd2-inpaint": "inpainting_v2", "sdxl": "xl_base", "sdxl-inpaint": "xl_inpaint",
                         "sd3": "sd3", "sd35-medium": "sd35_medium", "sd35-large": "sd35_large"}


def real_size_layout(variant: str) -> dict[str, torch.Tensor]:
    """A full-size checkpoint of a shipped variant as meta tensors, in the original layout."""
    from diffusers import AutoencoderKL, SD3Transformer2DModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = CONFIGS_DIR / variant

    def config(name: str) -> dict:
        return json.loads((folder / name / "config.json").read_text())

    def clip(name: str, with_projection: bool):
        return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(CLIPTextConfig(**config(name)))

    with torch.device("meta"):
        state = vae_to_ldm(AutoencoderKL.from_config(config("vae")))
        if variant.startswith("sd3"):
            state.update(mmdit_to_original(SD3Transformer2DModel.from_config(config("transformer"))))
            state.update(hf_clip_to_prefix(clip("text_encoder", True), "text_encoders.clip_l.transformer.", False))
            state.update(hf_clip_to_prefix(clip("text_encoder_2", True), "text_encoders.clip_g.transformer."))
            return state
        state.update(unet_to_ldm(UNet2DConditionModel.from_config(config("unet"))))
        if variant.startswith("sd1"):
            state.update(hf_clip_to_prefix(clip("text_encoder", False), "cond_stage_model.transformer."))
        elif variant.startswith("sd2"):
            state.update(open_clip_to_ldm(clip("text_encoder", False), SD2_TEXT))
        else:
            state.update(hf_clip_to_prefix(clip("text_encoder", False), "conditioner.embedders.0.transformer.", False))
            state.update(open_clip_to_ldm(clip("text_encoder_2", True), "conditioner.embedders.1.model."))
    return state


@pytest.mark.parametrize("variant", list(DIFFUSERS_MODEL_TYPES))
def test_every_shipped_variant_is_recognized_at_real_size_as_diffusers_recognizes_it(variant, tmp_path):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    state = real_size_layout(variant)
    path = tmp_path / f"{variant}.safetensors"
    if variant == "sd2-base":
        path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: eps\n")
    header = {k: TensorInfo("F16", tuple(v.shape)) for k, v in state.items()}
    assert recognize(path, header).folder == variant
    # diffusers' own recognizer keys on real sizes (context widths, position grids, block counts)
    assert infer_diffusers_model_type(state) == DIFFUSERS_MODEL_TYPES[variant]


@pytest.mark.parametrize("variant", ["sd3", "sd35-medium", "sd35-large"])
def test_the_shipped_mmdit_configs_take_every_weight_of_a_real_size_file(variant):
    """diffusers' converter, run on a real-size original layout, gives exactly the shipped model's keys and shapes."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    config = json.loads((CONFIGS_DIR / variant / "transformer" / "config.json").read_text())
    with torch.device("meta"):
        model = SD3Transformer2DModel.from_config(config)
    original = {k: v for k, v in real_size_layout(variant).items() if k.startswith("model.diffusion_model.")}
    converted = convert_sd3_transformer_checkpoint_to_diffusers(original)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == expected


@pytest.mark.parametrize("blocks", [23, 24])
def test_an_sd2_file_with_23_or_24_openclip_blocks_fills_exactly_sd2s_23_layer_text_encoder(blocks):
    """The official converter writes the 23 blocks SD2 uses, original checkpoints all 24: both fill every weight of
    the shipped encoder, the 23rd block in the 23rd layer (the removed converter built 22 layers from 23 blocks)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    config = json.loads((CONFIGS_DIR / "sd2-v" / "text_encoder" / "config.json").read_text())
    assert config["num_hidden_layers"] == 23
    with torch.device("meta"):
        model = CLIPTextModel(CLIPTextConfig(**config))
        written = CLIPTextModel(CLIPTextConfig(**{**config, "num_hidden_layers": blocks}))
    converted = convert_open_clip_checkpoint(model, open_clip_to_ldm(written, SD2_TEXT), prefix=SD2_TEXT)
    expected = {k.removeprefix("text_model."): tuple(v.shape) for k, v in model.state_dict().items()
                if not k.endswith("position_ids")}
    got = {k.removeprefix("text_model."): tuple(v.shape) for k, v in converted.items() if not k.endswith("position_ids")}
    assert got == expected


# ---- recognizing the family from the header; refusing what it is not


def write_fake(path: Path, family: str, in_channels: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(fake_ldm_tensors(family, in_channels), str(path))
    return path


def recognized(path: Path):
    return recognize(path, read_safetensors_header(path))


def test_sd2_defaults_to_v_prediction_and_a_sidecar_yaml_decides_otherwise(tmp_path):
    path = write_fake(tmp_path / "sd2.safetensors", "sd2")
    variant = recognized(path)
    assert (variant.folder, variant.prediction_type) == ("sd2-v", "v_prediction")
    path.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    assert (recognized(path).folder, recognized(path).prediction_type) == ("sd2-base", "epsilon")
    path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: banana\n")
    with pytest.raises(ModelError, match=r"sd2.yaml: parameterization 'banana' is not supported; allowed: eps, v"):
        recognized(path)


@pytest.mark.parametrize("family, folder", [("sd1", "sd1-inpaint"), ("sd2", "sd2-inpaint"),
                                            ("sdxl", "sdxl-inpaint")])
def test_nine_channel_unets_are_inpainting_models(tmp_path, family, folder):
    variant = recognized(write_fake(tmp_path / f"{family}-inpainting.safetensors", family, in_channels=9))
    assert (variant.folder, variant.prediction_type) == (folder, "epsilon")


def test_the_cached_config_folder_holds_the_tokenizers_and_is_reused(tmp_path, shared_cache):
    from transformers import CLIPTokenizer

    from ldm_ui.engine.single_file import config_folder

    variant = recognized(write_fake(tmp_path / "xl.safetensors", "sdxl"))
    folder = config_folder(variant, shared_cache)
    assert config_folder(variant, shared_cache) == folder
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    assert tokenizer_2.pad_token == "!" and len(tokenizer_2) == 49408
    # CLIP's published token ids, built offline from the BPE table open_clip_torch ships
    assert tokenizer_2("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert not list(folder.rglob("*.safetensors"))  # configs only: the weights come from the user's file


def test_an_unknown_family_is_refused_naming_what_was_looked_for(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"some.weight": torch.zeros(3, 3), "other.bias": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match=r"mystery.safetensors is not a checkpoint family ldm-ui knows; it looked "
                                         r"for 'model.diffusion_model.input_blocks.0.0.weight'.*joint_blocks"):
        recognized(path)
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    with pytest.raises(ModelError, match=r"style.safetensors is not a checkpoint family .*it is a LoRA"):
        recognized(lora)
    depth = write_fake(tmp_path / "depth.safetensors", "sd2", in_channels=5)
    with pytest.raises(ModelError, match=r"depth.safetensors: a UNet with 5 input channels is not supported"):
        recognized(depth)


def test_an_sd3_file_without_its_text_encoders_is_refused_with_the_reason(tmp_path):
    """(A FLUX.1 file holds only its transformer by design: tests/test_flux_single_file.py.)"""
    sd3 = tmp_path / "sd3_medium.safetensors"
    save_file({"model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight": torch.zeros(6, 2),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(2, 2)}, str(sd3))
    with pytest.raises(ModelError, match=r"holds the SD3 Medium transformer but not "
                                         r"'text_encoders.clip_l.transformer.\*', 'text_encoders.clip_g"):
        recognized(sd3)


def test_a_file_of_the_wrong_size_for_its_family_names_the_family(tmp_path, shared_cache, sd1_files):
    """A file whose shapes do not fit the shipped folder (here: a tiny SD1 against the real SD1.5 sizes)."""
    config = make_config(sd1_files["models"], shared_cache, tmp_path)
    with pytest.raises(ModelError, match=r"could not load tiny.safetensors as SD1.x \(configs/sd1\)"):
        load_single_file(sd1_files["file"], config, torch.float32)


def test_a_file_outside_the_models_folders_is_refused(sd1_files, shared_cache, families, tmp_path):
    outside = tmp_path / "elsewhere" / "stray.safetensors"
    outside.parent.mkdir()
    shutil.copy(sd1_files["file"], outside)
    manager = manager_for(make_config(sd1_files["models"], shared_cache, tmp_path), families)
    for name in (str(outside), "../elsewhere/stray.safetensors", "Stable-diffusion/../../elsewhere/stray.safetensors"):
        with pytest.raises(RequestError, match=r"absolute path|\.\.|unknown model"):
            manager.get(name)
    assert manager.current is None


def test_ckpt_dir_flag_lists_and_loads_a_nested_automatic1111_folder(sd1_files, shared_cache, families, tmp_path):
    a1111 = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    (a1111 / "anime").mkdir(parents=True)
    shutil.copy(sd1_files["file"], a1111 / "anime" / "tiny-copy.safetensors")
    config = config_from_args(["--models-dir", str(tmp_path / "empty-models"), "--ckpt-dir", str(a1111)])
    manager = manager_for(replace(config, cache_dir=shared_cache, outputs_dir=tmp_path / "outputs"), families)
    assert "anime/tiny-copy.safetensors" in manager.model_names()
    loaded = manager.get("anime/tiny-copy.safetensors")
    assert loaded.entry.kind == "single_file"
    assert torch.equal(loaded.pipe.unet.conv_in.weight, sd1_files["pipe"].unet.conv_in.weight)


def test_a_hub_id_while_offline_gives_the_offline_message(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")  # conftest sets it
    manager = ModelManager(make_config(tmp_path / "models", tmp_path / "cache", tmp_path))
    with pytest.raises(ModelError, match=r"not downloaded and the app is offline \(HF_HUB_OFFLINE=1\)"):
        manager.get("nobody-here/no-such-model")


# ---- damaged files and pickles


def test_a_truncated_file_is_refused_with_its_name(sd1_files, tmp_path):
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    data = sd1_files["file"].read_bytes()
    (folder / "cut.safetensors").write_bytes(data[: len(data) // 2])
    manager = ModelManager(make_config(tmp_path / "models", tmp_path / "cache", tmp_path))
    with pytest.raises(ModelError, match=r"cut.safetensors is truncated"):
        manager.get("cut.safetensors")
    assert manager.current is None


def forged(header: str, data_bytes: int) -> bytes:
    raw = header.encode()
    return len(raw).to_bytes(8, "little") + raw + b"\0" * data_bytes


@pytest.mark.parametrize("content, message", [
    (b"", r"only 0 bytes long"),
    (random.Random(0).randbytes(4096), r"header claims"),
    (forged('{"a": [1, 2, 3]}', 0), r"malformed header entry"),
    (forged('{"w": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}', 4), r"dtype 'F99'"),
    (forged('{"w": {"dtype": "F32", "shape": [9], "data_offsets": [0, 4]}}', 4), r"shape \[9\] of F32 needs 36 bytes"),
    (forged('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 9),
     r"corrupted: its header describes 4 bytes"),
    (forged('{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
            '"v": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', 4), r"must not overlap"),
    (forged('{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}', 4), r"truncated or corrupted"),
    (forged('[1, 2]', 0), r"not a JSON object"),
])
def test_garbage_and_forged_headers_are_refused_with_the_file_name(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as caught:
        read_safetensors_header(path)
    assert "bad.safetensors" in str(caught.value)


@pytest.fixture
def pickle_models(sd1_files, tmp_path) -> Path:
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    torch.save({"state_dict": sd1_files["state"], "global_step": 10}, folder / "old.ckpt")
    return tmp_path / "models"


def test_a_pickle_checkpoint_is_refused_without_the_flag(pickle_models, tmp_path):
    config = make_config(pickle_models, tmp_path / "cache", tmp_path)
    manager = ModelManager(config)
    assert "old.ckpt" not in manager.model_names()
    with pytest.raises(ModelError, match=r"'old.ckpt' is a pickle checkpoint.*--allow-pickle"):
        manager.get("old.ckpt")
    with pytest.raises(ModelError, match=r"old.ckpt is a pickle checkpoint.*--allow-pickle"):
        load_single_file(pickle_models / "Stable-diffusion" / "old.ckpt", config, torch.float32)


def test_a_pickle_checkpoint_loads_with_the_flag(pickle_models, sd1_files, shared_cache, families, tmp_path):
    config = config_from_args(["--models-dir", str(pickle_models), "--allow-pickle"])
    manager = manager_for(replace(config, cache_dir=shared_cache, outputs_dir=tmp_path / "outputs"), families)
    assert "old.ckpt" in manager.model_names()
    loaded = manager.get("old.ckpt")
    reference = sd1_files["pipe"]
    for name in ("unet", "vae", "text_encoder"):
        expected = getattr(reference, name).state_dict()
        got = getattr(loaded.pipe, name).state_dict()
        assert all(torch.equal(expected[k], got[k]) for k in expected), name


class _RunsCode:
    """A pickle payload that would create a folder when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_pickle_that_would_run_code_is_refused_even_with_the_flag(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(marker)}, path)
    config = make_config(tmp_path / "models", tmp_path / "cache", tmp_path, allow_pickle=True)
    with pytest.raises(ModelError, match=r"refused to load evil.ckpt: it contains pickled objects other than tensors"):
        load_single_file(path, config, torch.float32)
    assert not marker.exists()


