"""The VAE selector: Automatic / None / a file from models/VAE or --vae-dir, switched without reloading the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ldm_layout import sd1_pipeline_to_ldm, vae_to_ldm
from ldm_ui.config import AppConfig, config_from_args
from ldm_ui.engine.vae_choice import VAE_AUTOMATIC, VAE_NONE, vae_choices
from ldm_ui.metadata import parse_infotext
from ldm_ui.engine.engine import JobFailed
from tiny_families import family_configs
from ldm_ui.requests import SetVaeRequest, Txt2ImgRequest
from tiny_models import build_tiny_sd1_layout

MODEL = "tiny-sd1"
SINGLE = "tiny.safetensors"


def brighter(vae):
    """A copy of `vae` whose decoder adds +0.4 to every pixel: its images are visibly another VAE's."""
    import copy

    other = copy.deepcopy(vae)
    with torch.no_grad():
        other.decoder.conv_out.bias += 0.4
    return other


def strip_prefix(state: dict) -> dict:
    """A standalone VAE file as shared (keys without 'first_stage_model.')."""
    return {k.removeprefix("first_stage_model."): v.contiguous() for k, v in state.items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ldm_ui.engine.clip_vocab import save_clip_tokenizer

    root = tmp_path_factory.mktemp("vae-models")
    cache = tmp_path_factory.mktemp("vae-cache")
    save_clip_tokenizer(root / "clip-tokenizer", cache, pad_token="<|endoftext|>")
    pipe = build_tiny_sd1_layout(root / "diffusers" / MODEL, root / "clip-tokenizer")
    (root / "Stable-diffusion").mkdir()
    save_file(sd1_pipeline_to_ldm(pipe), str(root / "Stable-diffusion" / SINGLE))
    bright = brighter(pipe.vae)
    (root / "VAE").mkdir()
    save_file(strip_prefix(vae_to_ldm(bright)), str(root / "VAE" / "bright.safetensors"))
    bright.save_pretrained(root / "VAE" / "bright-diffusers")  # a diffusers folder
    extra = tmp_path_factory.mktemp("vae-dir")
    save_file({"decoder.conv_in.weight": torch.zeros(8, 16, 3, 3)}, str(extra / "flux-like.safetensors"))
    return {"models": root, "cache": cache, "pipe": pipe, "bright": bright, "extra": extra}


@pytest.fixture
def engine(files, tmp_path):
    from ldm_ui.engine.engine import Engine

    config = AppConfig(models_dir=files["models"], outputs_dir=tmp_path / "outputs", cache_dir=files["cache"],
                       default_model=MODEL, vae_dirs=[files["extra"]], preview_method="off")
    engine = Engine(config)
    # the single file is a tiny model: diffusers' loader reads the tiny sizes from a config folder of its own
    family_configs(files["models"] / "diffusers" / MODEL, tmp_path / "families", "sd1")
    engine.models.single_file_configs = tmp_path / "families"
    engine.start()
    yield engine
    engine.shutdown()


def generate(engine, model=MODEL):
    request = Txt2ImgRequest(prompt="a red circle", model=model, sampler="Euler", steps=3, seed=7, width=64,
                             height=64)
    [output] = engine.generate(request, timeout=300).outputs
    return np.asarray(output.image, dtype=np.int16), output.infotext


def set_vae(engine, name, model=MODEL):
    return engine.submit(SetVaeRequest(vae=name, model=model)).wait(300)


def test_choices_list_files_folders_and_the_vae_dir_flag(files, engine):
    assert vae_choices(engine.config) == [VAE_AUTOMATIC, VAE_NONE, "bright-diffusers", "bright.safetensors",
                                          "flux-like.safetensors"]
    assert config_from_args(["--vae-dir", "/some/where"]).vae_dirs == [Path("/some/where")]


def test_a_vae_file_changes_the_decode_not_the_unet_and_none_brings_the_original_back(files, engine):
    original, info = generate(engine)
    assert "VAE" not in parse_infotext(info).settings
    loaded = engine.models.current
    unet_before = {k: v.clone() for k, v in loaded.pipe.unet.state_dict().items()}
    encoder_before = loaded.pipe.text_encoder

    set_vae(engine, "bright.safetensors")
    assert engine.models.current is loaded, "switching the VAE must not reload the checkpoint"
    bright, info = generate(engine)
    assert bright.mean() > original.mean() + 20  # the brighter decoder's images
    unet_after = loaded.pipe.unet.state_dict()
    assert all(torch.equal(unet_before[k], unet_after[k]) for k in unet_before)
    assert loaded.pipe.text_encoder is encoder_before
    settings = parse_infotext(info).settings
    file_hash = hashlib.sha256((files["models"] / "VAE" / "bright.safetensors").read_bytes()).hexdigest()[:10]
    assert settings["VAE"] == "bright" and settings["VAE hash"] == file_hash
    # the decoder weights are the file's, converted from the original layout
    assert torch.equal(loaded.pipe.vae.decoder.conv_out.bias, files["bright"].decoder.conv_out.bias)

    set_vae(engine, "bright-diffusers")
    folder_image, _ = generate(engine)
    assert np.abs(folder_image - bright).max() <= 1

    set_vae(engine, VAE_NONE)
    back, info = generate(engine)
    assert np.array_equal(back, original) and "VAE hash" not in info


def test_img2img_pipelines_built_before_the_switch_use_the_new_vae(engine):
    from ldm_ui.engine.tasks.img2img import IMG2IMG_PIPELINE

    loaded = engine.models.get(MODEL)
    img2img_pipe = loaded.pipeline(IMG2IMG_PIPELINE)
    set_vae(engine, "bright.safetensors")
    assert img2img_pipe.vae is loaded.pipe.vae is loaded.vae.vae


def test_automatic_uses_a_sidecar_vae_beside_a_single_file_checkpoint(files, engine, tmp_path):
    sidecar = files["models"] / "Stable-diffusion" / "tiny.vae.safetensors"
    save_file(strip_prefix(vae_to_ldm(files["bright"])), str(sidecar))
    try:
        _, info = generate(engine, model=SINGLE)
        assert parse_infotext(info).settings.get("VAE") == "tiny"
        set_vae(engine, VAE_NONE, model=SINGLE)
        _, info = generate(engine, model=SINGLE)
        assert "VAE" not in parse_infotext(info).settings
    finally:
        sidecar.unlink()


def test_the_choice_stays_when_the_model_changes(engine):
    set_vae(engine, "bright.safetensors")
    generate(engine, model=SINGLE)
    assert engine.models.current.entry.name == SINGLE
    _, info = generate(engine, model=SINGLE)
    assert parse_infotext(info).settings["VAE"] == "bright"


def test_a_vae_of_another_latent_family_is_refused_with_both_channel_counts(engine):
    with pytest.raises(JobFailed) as error:
        set_vae(engine, "flux-like.safetensors")
    message = str(error.value)
    assert "16 latent channels" in message and "uses 4" in message
    generate(engine)  # the engine keeps serving, with the VAE it had


def test_an_unknown_vae_names_the_choices(engine):
    with pytest.raises(JobFailed, match="unknown VAE 'nope'.*bright.safetensors"):
        set_vae(engine, "nope")
