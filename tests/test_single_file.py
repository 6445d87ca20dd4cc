"""Single-file checkpoints: loaded offline like a user's file, recognized from their header, and refused clearly
when truncated, corrupted, pickled without the flag, or of an unknown layout."""

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

from ldm_layout import fake_ldm_tensors, sd1_pipeline_to_ldm
from ldm_ui.config import AppConfig, config_from_args
from ldm_ui.engine.checkpoint_files import read_safetensors_header
from ldm_ui.engine.models import ModelError, ModelManager
from ldm_ui.requests import Txt2ImgRequest
from tiny_models import build_tiny_sd1_layout

REFERENCE = "tiny-sd1"
SINGLE = "tiny.safetensors"


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the module, so the CLIP tokenizer files are built once."""
    return tmp_path_factory.mktemp("single-file-cache")


@pytest.fixture(scope="module")
def sd1_files(tmp_path_factory, shared_cache):
    """A models folder with the tiny SD1-layout model twice: as a diffusers folder and as an LDM single file."""
    from ldm_ui.engine.clip_vocab import save_clip_tokenizer

    root = tmp_path_factory.mktemp("single-file-models")
    save_clip_tokenizer(root / "clip-tokenizer", shared_cache, pad_token="<|endoftext|>")
    pipe = build_tiny_sd1_layout(root / "diffusers" / REFERENCE, root / "clip-tokenizer")
    state = sd1_pipeline_to_ldm(pipe)
    (root / "Stable-diffusion").mkdir()
    save_file(state, str(root / "Stable-diffusion" / SINGLE))
    return {"models": root, "pipe": pipe, "state": state, "file": root / "Stable-diffusion" / SINGLE}


def make_config(models_dir: Path, cache_dir: Path, tmp_path: Path, **changes) -> AppConfig:
    return AppConfig(models_dir=models_dir, outputs_dir=tmp_path / "outputs", cache_dir=cache_dir,
                     default_model=REFERENCE, **changes)


def generate(engine, model: str) -> np.ndarray:
    request = Txt2ImgRequest(prompt="a red circle on a blue square", negative_prompt="blurry", model=model,
                             sampler="Euler", steps=3, cfg_scale=5.0, width=64, height=64, seed=1234,
                             preview_method="off")
    return np.asarray(engine.generate(request, timeout=300).images[0], dtype=np.int16)


# ---- loading a user's file


def test_single_file_gives_the_same_pixels_as_the_same_weights_in_a_diffusers_folder(sd1_files, shared_cache,
                                                                                      tmp_path):
    from ldm_ui.engine.engine import Engine

    config = make_config(sd1_files["models"], shared_cache, tmp_path)
    engine = Engine(config).start()
    try:
        assert SINGLE in engine.models.model_names()
        reference = generate(engine, REFERENCE)
        from_file = generate(engine, SINGLE)
        loaded = engine.models.current
    finally:
        engine.shutdown()
    assert loaded.entry.kind == "single_file"
    assert loaded.native_size == 512  # SD1.x's native size: sample size is not in the shapes, so the family's
    assert len(loaded.model_hash) == 10  # AUTOMATIC1111's short hash of the file, for the infotext
    assert np.abs(reference - from_file).max() <= 1
    assert reference.std() > 1  # a real picture, not a flat fill that would match anything


def test_derived_configs_follow_the_checkpoint_shapes_and_are_reused(sd1_files, shared_cache, tmp_path):
    config = make_config(sd1_files["models"], shared_cache, tmp_path)
    folders = shared_cache / "single-file-configs"
    manager = ModelManager(config)
    manager.get(SINGLE)
    manager.unload()
    manager.get(SINGLE)
    derived = [p for p in folders.iterdir() if not p.name.endswith(".partial")]
    assert len(derived) == 1  # loading the same architecture twice reuses one folder
    unet = json.loads((derived[0] / "unet" / "config.json").read_text())
    reference = sd1_files["pipe"].unet.config
    for field in ("block_out_channels", "layers_per_block", "cross_attention_dim", "in_channels",
                  "down_block_types", "up_block_types"):
        assert list(np.atleast_1d(unet[field])) == list(np.atleast_1d(reference[field])), field
    text = json.loads((derived[0] / "text_encoder" / "config.json").read_text())
    assert (text["hidden_size"], text["num_hidden_layers"], text["intermediate_size"]) == (48, 2, 64)
    vae = json.loads((derived[0] / "vae" / "config.json").read_text())
    assert vae["block_out_channels"] == [32, 32, 32, 32] and vae["layers_per_block"] == 1


def test_ckpt_dir_flag_lists_and_loads_a_nested_automatic1111_folder(sd1_files, shared_cache, tmp_path):
    a1111 = tmp_path / "stable-diffusion-webui" / "models" / "Stable-diffusion"
    (a1111 / "anime").mkdir(parents=True)
    shutil.copy(sd1_files["file"], a1111 / "anime" / "tiny-copy.safetensors")
    config = config_from_args(["--models-dir", str(tmp_path / "empty-models"), "--ckpt-dir", str(a1111)])
    config = replace(config, cache_dir=shared_cache, outputs_dir=tmp_path / "outputs")
    manager = ModelManager(config)
    assert "anime/tiny-copy.safetensors" in manager.model_names()
    loaded = manager.get("anime/tiny-copy.safetensors")
    assert loaded.entry.kind == "single_file"
    assert torch.equal(loaded.pipe.unet.conv_in.weight, sd1_files["pipe"].unet.conv_in.weight)


def test_a_hub_id_while_offline_gives_the_offline_message(tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")  # conftest sets it
    manager = ModelManager(make_config(tmp_path / "models", tmp_path / "cache", tmp_path))
    with pytest.raises(ModelError, match=r"not downloaded and the app is offline \(HF_HUB_OFFLINE=1\)"):
        manager.get("nobody-here/no-such-model")


# ---- recognizing the architecture from the header


def write_fake(path: Path, family: str, in_channels: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(fake_ldm_tensors(family, in_channels), str(path))
    return path


def detect(path: Path):
    from ldm_ui.engine.single_file import derive_configs, detect_architecture

    tensors = read_safetensors_header(path)
    arch = detect_architecture(path, tensors)
    return arch, derive_configs(path, arch, tensors)


def test_sd2_is_recognized_with_its_openclip_text_encoder_and_v_prediction(tmp_path):
    arch, configs = detect(write_fake(tmp_path / "sd2.safetensors", "sd2"))
    assert (arch.family, arch.inpainting, arch.prediction_type, arch.sample_size) == ("sd2", False, "v_prediction", 96)
    assert configs["model_index"]["_class_name"] == "StableDiffusionPipeline"
    assert configs["unet"]["use_linear_projection"] is True
    assert configs["unet"]["block_out_channels"] == [160, 320, 640, 640]
    assert configs["unet"]["cross_attention_dim"] == 64
    assert configs["text_encoder"]["num_hidden_layers"] == 3  # penultimate layer of 4, as SD2 conditions on it
    assert configs["text_encoder"]["hidden_act"] == "gelu"
    assert configs["scheduler"]["prediction_type"] == "v_prediction"


def test_an_sd2_sidecar_yaml_without_v_parameterization_makes_it_an_epsilon_512_model(tmp_path):
    path = write_fake(tmp_path / "sd2-base.safetensors", "sd2")
    path.with_suffix(".yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n")
    arch, configs = detect(path)
    assert (arch.prediction_type, arch.sample_size) == ("epsilon", 64)
    assert configs["scheduler"]["prediction_type"] == "epsilon"
    path.with_suffix(".yaml").write_text("model:\n  params:\n    parameterization: banana\n")
    with pytest.raises(ModelError, match=r"sd2-base.yaml: parameterization 'banana' is not supported; allowed: eps, v"):
        detect(path)


def test_sdxl_is_recognized_with_both_text_encoders(tmp_path, shared_cache):
    from ldm_ui.engine.single_file import config_folder

    arch, configs = detect(write_fake(tmp_path / "xl.safetensors", "sdxl"))
    assert (arch.family, arch.prediction_type, arch.sample_size) == ("sdxl", "epsilon", 128)
    unet = configs["unet"]
    assert unet["addition_embed_type"] == "text_time" and unet["projection_class_embeddings_input_dim"] == 2816
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert unet["transformer_layers_per_block"] == [1, 2, 3]
    assert unet["cross_attention_dim"] == 48 + 40
    assert configs["text_encoder"]["hidden_size"] == 48 and configs["text_encoder_2"]["hidden_size"] == 40
    assert configs["text_encoder_2"]["num_hidden_layers"] == 4
    folder = config_folder(configs, shared_cache)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    assert index["text_encoder_2"] == ["transformers", "CLIPTextModelWithProjection"]
    from transformers import CLIPTokenizer

    tokenizer_2 = CLIPTokenizer.from_pretrained(folder / "tokenizer_2")
    assert tokenizer_2.pad_token == "!" and len(tokenizer_2) == 49408
    # CLIP's published token ids, built offline from the BPE table open_clip_torch ships
    assert tokenizer_2("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


@pytest.mark.parametrize("family, pipeline", [("sd1", "StableDiffusionInpaintPipeline"),
                                              ("sd2", "StableDiffusionInpaintPipeline")])
def test_nine_channel_unets_are_inpainting_models(tmp_path, family, pipeline):
    arch, configs = detect(write_fake(tmp_path / f"{family}-inpainting.safetensors", family, in_channels=9))
    assert arch.inpainting and configs["unet"]["in_channels"] == 9
    assert configs["model_index"]["_class_name"] == pipeline
    assert arch.prediction_type == "epsilon"  # SD2 inpainting was trained from the 512-px epsilon base


def test_an_unknown_layout_names_the_file_and_what_was_expected(tmp_path):
    path = tmp_path / "mystery.safetensors"
    save_file({"some.weight": torch.zeros(3, 3), "other.bias": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match=r"mystery.safetensors is not a full Stable Diffusion checkpoint.*SD1\.x, "
                                         r"SD2\.x or SDXL base checkpoint"):
        detect(path)
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 4)}, str(lora))
    with pytest.raises(ModelError, match=r"style.safetensors .*it is a LoRA"):
        detect(lora)
    depth = write_fake(tmp_path / "depth.safetensors", "sd2", in_channels=5)
    with pytest.raises(ModelError, match=r"depth.safetensors: a UNet with 5 input channels is not supported"):
        detect(depth)


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
    from ldm_ui.engine.single_file import load_single_file

    config = make_config(pickle_models, tmp_path / "cache", tmp_path)
    manager = ModelManager(config)
    assert "old.ckpt" not in manager.model_names()
    with pytest.raises(ModelError, match=r"'old.ckpt' is a pickle checkpoint.*--allow-pickle"):
        manager.get("old.ckpt")
    with pytest.raises(ModelError, match=r"old.ckpt is a pickle checkpoint.*--allow-pickle"):
        load_single_file(pickle_models / "Stable-diffusion" / "old.ckpt", config, torch.float32)


def test_a_pickle_checkpoint_loads_with_the_flag(pickle_models, sd1_files, shared_cache, tmp_path):
    config = config_from_args(["--models-dir", str(pickle_models), "--allow-pickle"])
    config = replace(config, cache_dir=shared_cache, outputs_dir=tmp_path / "outputs")
    manager = ModelManager(config)
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
    from ldm_ui.engine.single_file import load_single_file

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _RunsCode(marker)}, path)
    config = make_config(tmp_path / "models", tmp_path / "cache", tmp_path, allow_pickle=True)
    with pytest.raises(ModelError, match=r"refused to load evil.ckpt: it contains pickled objects other than tensors"):
        load_single_file(path, config, torch.float32)
    assert not marker.exists()


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_a_full_size_checkpoint_derives_exactly_the_shipped_architecture(family):
    """Real SD1.5 / SD2.1 / SDXL sizes (built on the meta device, no memory): derivation must be the identity."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ldm_layout import unet_to_ldm, vae_to_ldm
    from ldm_ui.engine.checkpoint_files import TensorInfo
    from ldm_ui.engine.single_file import derive_configs, detect_architecture, family_defaults

    shipped = family_defaults(family)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(shipped["unet"])
        vae = AutoencoderKL.from_config(shipped["vae"])
    state = {**unet_to_ldm(unet), **vae_to_ldm(vae)}
    tensors = {k: TensorInfo("F16", tuple(v.shape)) for k, v in state.items()}
    for name, prefix, kind in {"sd1": [("text_encoder", "cond_stage_model.transformer.text_model.", "hf")],
                               "sd2": [("text_encoder", "cond_stage_model.model.", "open")],
                               "sdxl": [("text_encoder", "conditioner.embedders.0.transformer.text_model.", "hf"),
                                        ("text_encoder_2", "conditioner.embedders.1.model.", "open")]}[family]:
        text = shipped[name]
        width, layers = text["hidden_size"], text["num_hidden_layers"] + (1 if family == "sd2" else 0)
        mlp = TensorInfo("F16", (text["intermediate_size"], width))
        if kind == "hf":
            tensors[prefix + "embeddings.token_embedding.weight"] = TensorInfo("F16", (49408, width))
            tensors[prefix + "embeddings.position_embedding.weight"] = TensorInfo("F16", (77, width))
            for layer in range(layers):
                tensors[f"{prefix}encoder.layers.{layer}.mlp.fc1.weight"] = mlp
        else:
            tensors[prefix + "token_embedding.weight"] = TensorInfo("F16", (49408, width))
            tensors[prefix + "positional_embedding"] = TensorInfo("F16", (77, width))
            tensors[prefix + "text_projection"] = TensorInfo("F16", (width, text["projection_dim"]))
            for layer in range(layers):
                tensors[f"{prefix}transformer.resblocks.{layer}.mlp.c_fc.weight"] = mlp
    path = Path(f"{family}-full.safetensors")
    arch = detect_architecture(path, tensors)
    derived = derive_configs(path, arch, tensors)
    assert arch.family == family
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        if component in shipped:
            assert derived[component] == shipped[component], component


def test_a_nine_channel_sd1_file_loads_as_an_inpainting_model(tmp_path, shared_cache, sd1_files):
    folder = tmp_path / "models" / "Stable-diffusion"
    folder.mkdir(parents=True)
    pipe = build_tiny_sd1_layout(tmp_path / "reference-inpainting", sd1_files["models"] / "clip-tokenizer",
                                 in_channels=9)
    save_file(sd1_pipeline_to_ldm(pipe), str(folder / "tiny-inpainting.safetensors"))
    loaded = ModelManager(make_config(tmp_path / "models", shared_cache, tmp_path)).get("tiny-inpainting.safetensors")
    assert loaded.is_inpainting_model
    assert type(loaded.pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert torch.equal(loaded.pipe.unet.conv_in.weight, pipe.unet.conv_in.weight)
