"""A FLUX.1 single file (transformer only, as Black Forest Labs publishes it) loads through diffusers' own
converter with the shipped config folder, and takes its VAE and text encoders (with the T5 tokenizer) from a
FLUX.1 diffusers folder in models/diffusers; without such a folder it is refused, saying what to provide."""

from __future__ import annotations

import gc
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from ldm_ui.config import AppConfig
from ldm_ui.engine.checkpoint_files import TensorInfo, read_safetensors_header
from ldm_ui.engine.model_types import ModelError
from ldm_ui.engine.single_file import CONFIGS_DIR, recognize
from ldm_ui.requests import Finished, Preview, Txt2ImgRequest
from original_layouts import flux_to_original
from tiny_families import build_flux

FLUX_FILE = "flux1-tiny.safetensors"


def shipped_transformer(variant: str, **changes):
    from diffusers import FluxTransformer2DModel

    config = json.loads((CONFIGS_DIR / variant / "transformer" / "config.json").read_text())
    return FluxTransformer2DModel.from_config({**config, **changes})


@pytest.mark.parametrize("variant, diffusers_type", [("flux-dev", "flux-dev"), ("flux-schnell", "flux-schnell")])
def test_a_real_size_flux_file_is_recognized_and_fills_exactly_the_shipped_transformer(variant, diffusers_type,
                                                                                         tmp_path):
    """Meta tensors (no memory): the real FLUX.1 layout -> our variant and diffusers' own, and diffusers' converter
    gives exactly the keys and shapes of the shipped config's transformer."""
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers, infer_diffusers_model_type,
    )

    with torch.device("meta"):
        model = shipped_transformer(variant)
        original = flux_to_original(model)
    header = {k: TensorInfo("BF16", tuple(v.shape)) for k, v in original.items()}
    assert recognize(tmp_path / "flux1.safetensors", header).folder == variant
    assert infer_diffusers_model_type(original) == diffusers_type
    converted = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_flux_fill_is_refused_naming_what_it_is(tmp_path):
    path = tmp_path / "flux1-fill-dev.safetensors"
    save_file({"double_blocks.0.img_attn.norm.key_norm.scale": torch.zeros(4), "img_in.weight": torch.zeros(8, 384),
               "guidance_in.in_layer.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(ModelError, match=r"flux1-fill-dev.safetensors is FLUX.1 Fill, which needs its own pipeline"):
        recognize(path, read_safetensors_header(path))


@pytest.fixture(scope="module")
def flux_single_file(tmp_path_factory):
    """A FLUX.1-dev-layout file at FLUX.1's real width (diffusers' converter assumes 3072 channels) with one double
    and one single block, text widths of the tiny encoders; and the config folder for that size."""
    root = tmp_path_factory.mktemp("flux-file")
    cache, models, configs = root / "cache", root / "models", root / "configs"
    (models / "Stable-diffusion").mkdir(parents=True)
    sizes = dict(num_layers=1, num_single_layers=1, joint_attention_dim=32, pooled_projection_dim=32)
    torch.manual_seed(1)
    transformer = shipped_transformer("flux-dev", **sizes).to(torch.bfloat16)
    save_file(flux_to_original(transformer), str(models / "Stable-diffusion" / FLUX_FILE))
    expected = {k: v.float() for k, v in list(transformer.state_dict().items())[:40]}
    del transformer
    gc.collect()
    shutil.copytree(CONFIGS_DIR / "flux-dev", configs / "flux-dev")
    config_path = configs / "flux-dev" / "transformer" / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **sizes}))
    return dict(root=root, cache=cache, models=models, configs=configs, expected=expected)


def make_engine(files, default_model: str):
    from ldm_ui.engine.engine import Engine

    engine = Engine(AppConfig(models_dir=files["models"], outputs_dir=files["root"] / "outputs",
                              cache_dir=files["cache"], default_model=default_model, preview_interval_s=0)).start()
    engine.models.single_file_configs = files["configs"]
    return engine


def request(**changes) -> Txt2ImgRequest:
    settings = dict(prompt="a red circle", model=FLUX_FILE, sampler="Euler", steps=2, cfg_scale=3.5, width=64,
                    height=64, seed=5, preview_method="approx", preview_every_n_steps=1)
    return Txt2ImgRequest(**{**settings, **changes})


def test_a_flux_file_without_a_flux_folder_is_refused_saying_what_to_provide(flux_single_file):
    engine = make_engine(flux_single_file, FLUX_FILE)
    try:
        events = list(engine.submit(request()).events())
    finally:
        engine.shutdown()
    message = events[-1].message
    assert "flux1-tiny.safetensors is a FLUX.1-dev transformer: a FLUX.1 single file holds only the transformer" \
        in message
    assert "T5-XXL with its SentencePiece tokenizer" in message and "models/diffusers" in message


def test_a_flux_file_loads_with_the_text_encoders_of_a_flux_folder_and_generates(flux_single_file):
    files = flux_single_file
    build_flux(files["models"] / "diffusers" / "FLUX.1-tiny", files["cache"], seed=2)
    engine = make_engine(files, FLUX_FILE)
    try:
        events = list(engine.submit(request()).events())
        finished = events[-1]
        assert isinstance(finished, Finished), finished
        loaded = engine.models.current
        assert (loaded.family, loaded.entry.kind) == ("flux", "single_file")
        state = loaded.denoiser.state_dict()
        for key, value in files["expected"].items():  # the file's transformer, through diffusers' converter
            assert torch.equal(state[key], value), key
        assert type(loaded.pipe.tokenizer_2).__name__.startswith("T5Tokenizer")  # from the FLUX.1 folder
        assert dict(loaded.pipe.scheduler.config)["use_dynamic_shifting"]  # FLUX.1-dev's schedule, shipped
        assert finished.outputs[0].image.size == (64, 64)
        assert [e.image.size for e in events if isinstance(e, Preview)] == [(8, 8)] * 2
        again = engine.generate(request(preview_method="off"), timeout=600).images[0]
        assert np.array_equal(np.asarray(again), np.asarray(finished.outputs[0].image))
    finally:
        engine.shutdown()
