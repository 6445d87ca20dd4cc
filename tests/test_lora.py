"""LoRA through the engine, as a user drives it: tags in the prompt, weights, several at once, both file layouts."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import save_file
import torch

from ldm_ui.engine.engine import JobFailed
from ldm_ui.engine.lora import lora_hash, parse_lora_tags, strip_lora_tags
from ldm_ui.metadata import parse_infotext, read_png_parameters
from ldm_ui.requests import Txt2ImgRequest
from adapter_files import random_lora, write_diffusers_lora, write_kohya_lora

PROMPT = "a red circle"


@pytest.fixture
def lora_engine(app_config, tmp_path):
    """An engine whose --lora-dir holds a kohya file, the same weights in diffusers layout, and a second LoRA."""
    from diffusers import StableDiffusionPipeline

    from ldm_ui.engine.engine import Engine

    folder = tmp_path / "a1111-loras"
    base = StableDiffusionPipeline.from_pretrained(app_config.models_dir / "diffusers" / "tiny-sd")
    first = random_lora(base.unet, base.text_encoder, seed=1)
    write_kohya_lora(folder / "style-kohya.safetensors", first)
    write_diffusers_lora(folder / "style-diffusers.safetensors", first)
    write_diffusers_lora(folder / "sub" / "second.safetensors", random_lora(base.unet, seed=2))
    app_config.lora_dirs = [folder]
    engine = Engine(app_config).start()
    yield engine
    engine.shutdown()


def pixels(engine, prompt: str, seed: int = 7) -> tuple[np.ndarray, str]:
    finished = engine.generate(Txt2ImgRequest(prompt=prompt, steps=3, seed=seed, sampler="Euler"), timeout=120)
    return np.asarray(finished.outputs[0].image, dtype=np.int16), finished.outputs[0].infotext


def test_weights_change_without_reloading_and_removal_restores_base_exactly(lora_engine):
    base, _ = pixels(lora_engine, PROMPT)
    loaded = lora_engine.models.current
    unet = loaded.pipe.unet
    full, info_full = pixels(lora_engine, f"{PROMPT} <lora:style-kohya:1>")
    half, _ = pixels(lora_engine, f"{PROMPT} <lora:style-kohya:0.5>")
    zero, info_zero = pixels(lora_engine, f"{PROMPT} <lora:style-kohya:0>")
    removed, info_removed = pixels(lora_engine, PROMPT)
    assert np.abs(full - base).max() > 10, "the LoRA at weight 1 changed nothing"
    assert np.abs(half - base).mean() < np.abs(full - base).mean(), "half the weight should change less"
    assert np.array_equal(zero, base), "weight 0 must give the base model's pixels"
    assert np.array_equal(removed, base), "removing the LoRA must restore the base model's pixels exactly"
    assert lora_engine.models.current is loaded and loaded.pipe.unet is unet, "the base model was reloaded"
    assert "Lora hashes" in info_full and "Lora hashes" not in info_removed
    assert "<lora:style-kohya:1>" in info_full.splitlines()[0], "the infotext keeps the tag so it can be reused"
    assert "<lora:style-kohya:0>" in info_zero


def test_kohya_and_diffusers_layouts_load_to_the_same_result(lora_engine):
    kohya, _ = pixels(lora_engine, f"{PROMPT} <lora:style-kohya:1>")
    diffusers_layout, _ = pixels(lora_engine, f"{PROMPT} <lora:style-diffusers:1>")
    base, _ = pixels(lora_engine, PROMPT)
    assert np.abs(kohya - base).max() > 10
    assert np.abs(kohya - diffusers_layout).max() <= 1, "the same weights in two layouts must give one image"


def test_two_loras_at_once_each_with_its_own_weight(lora_engine, tmp_path):
    base, _ = pixels(lora_engine, PROMPT)
    first, _ = pixels(lora_engine, f"{PROMPT}, <lora:style-kohya:0.8>")
    second, _ = pixels(lora_engine, f"{PROMPT}, <lora:sub/second:0.8>")
    both, infotext = pixels(lora_engine, f"{PROMPT}, <lora:style-kohya:0.8> <lora:sub/second:0.8>")
    for alone in (base, first, second):
        assert np.abs(both - alone).max() > 5
    settings = parse_infotext(infotext).settings
    folder = tmp_path / "a1111-loras"
    expected = (f"style-kohya: {lora_hash(folder / 'style-kohya.safetensors', lora_engine.config.cache_dir)}, "
                f"sub/second: {lora_hash(folder / 'sub' / 'second.safetensors', lora_engine.config.cache_dir)}")
    assert settings["Lora hashes"] == expected
    assert len(expected.split(", ")[0].split(": ")[1]) == 12


def test_saved_png_records_lora_hashes(lora_engine):
    from PIL import Image

    finished = lora_engine.generate(Txt2ImgRequest(prompt=f"{PROMPT} <lora:style-kohya:0.6>", steps=2, seed=1))
    parsed = parse_infotext(read_png_parameters(Image.open(finished.outputs[0].path)))
    assert parsed.prompt == f"{PROMPT} <lora:style-kohya:0.6>"
    assert parsed.settings["Lora hashes"].startswith("style-kohya: ")


def test_tag_is_not_seen_by_the_text_encoder(lora_engine):
    """A LoRA at weight 0 leaves exactly the prompt without the tag (the tag's characters never reach CLIP)."""
    plain, _ = pixels(lora_engine, "a red circle")
    tagged, _ = pixels(lora_engine, "a red <lora:style-kohya:0> circle")
    assert np.array_equal(plain, tagged)


def test_missing_lora_fails_with_a_clear_message(lora_engine):
    with pytest.raises(JobFailed) as failure:
        lora_engine.generate(Txt2ImgRequest(prompt="a cat <lora:missing:1>", steps=2), timeout=60)
    message = str(failure.value)
    assert "unknown LoRA 'missing'" in message and "style-kohya" in message
    assert pixels(lora_engine, PROMPT)[0].shape == (64, 64, 3), "the engine keeps serving after the error"


def test_a_file_that_is_not_a_lora_is_named_in_the_error(lora_engine, tmp_path):
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(2, 2)},
              str(tmp_path / "a1111-loras" / "not-a-lora.safetensors"))
    with pytest.raises(JobFailed) as failure:
        lora_engine.generate(Txt2ImgRequest(prompt="x <lora:not-a-lora:1>", steps=2), timeout=60)
    assert "not-a-lora.safetensors is not a LoRA file" in str(failure.value)
    assert "lora_down" in str(failure.value) and "lora_A" in str(failure.value)


def test_names_resolve_only_inside_the_lora_folders(lora_engine):
    with pytest.raises(JobFailed, match=r"LoRA name '../a1111-loras/style-kohya' contains '\.\.'"):
        lora_engine.generate(Txt2ImgRequest(prompt="x <lora:../a1111-loras/style-kohya:1>", steps=2), timeout=60)


def test_tag_parsing():
    text, tags = parse_lora_tags("a cat, <lora:one:0.8>, on a mat <lora:two> <LORA:three:-0.5:0.2>")
    assert text == "a cat, on a mat"
    assert [(t.name, t.weight) for t in tags] == [("one", 0.8), ("two", 1.0), ("three", -0.5)]
    assert strip_lora_tags("<lora:x:1> a dog") == "a dog"
    with pytest.raises(ValueError, match="weight must be a number"):
        parse_lora_tags("<lora:x:lots>")
    with pytest.raises(ValueError, match="between -10 and 10"):
        parse_lora_tags("<lora:x:50>")


def test_a_lora_file_replaced_under_the_same_name_is_encoded_anew(lora_engine, tmp_path):
    """The same prompt text with a LoRA whose file changed: the text encoder's LoRA layers changed, so the
    prompt is encoded again (the engine keeps the last conditioning only while nothing it depends on changed)."""
    from diffusers import StableDiffusionPipeline

    folder = lora_engine.config.lora_dirs[0]
    prompt = f"{PROMPT} <lora:swapped:1>"
    base = StableDiffusionPipeline.from_pretrained(lora_engine.config.models_dir / "diffusers" / "tiny-sd")
    text_only = {key: pair for key, pair in random_lora(base.unet, base.text_encoder, seed=3).items()
                 if key[0] == "text_encoder"}
    write_diffusers_lora(folder / "swapped.safetensors", text_only)
    before, _ = pixels(lora_engine, prompt)
    again, _ = pixels(lora_engine, prompt)
    assert np.array_equal(before, again)
    other = {key: pair for key, pair in random_lora(base.unet, base.text_encoder, seed=4, scale=2.0).items()
             if key[0] == "text_encoder"}
    write_diffusers_lora(folder / "swapped.safetensors", other)
    after, _ = pixels(lora_engine, prompt)
    assert np.abs(after - before).max() > 10, "the replaced LoRA's text-encoder layers were not used"


def test_an_active_lora_is_merged_while_it_repeats_and_the_weights_come_back_exactly(lora_engine):
    """Merged into the weights (a step then costs what a base step costs), kept merged while the same LoRAs
    at the same weights repeat, and the base weights restored bit for bit when they change or go."""
    from ldm_ui.engine.lora_fusion import lora_layers

    pixels(lora_engine, PROMPT)
    unet = lora_engine.models.current.pipe.unet
    def base_weights() -> dict:  # peft moves a wrapped layer's own weight under `base_layer`
        return {name.replace(".base_layer", ""): p for name, p in unet.named_parameters() if "lora_" not in name}

    original = {name: p.detach().clone() for name, p in base_weights().items()}

    pixels(lora_engine, f"{PROMPT} <lora:style-kohya:1>")
    assert lora_layers(unet) == [], "the active LoRA was not merged (peft's wrapper layers are still there)"
    merged = {name: p.detach().clone() for name, p in base_weights().items()}
    assert any(not torch.equal(merged[name], original[name]) for name in original)
    pixels(lora_engine, f"{PROMPT} <lora:style-kohya:1>")
    assert all(torch.equal(p, merged[name]) for name, p in base_weights().items()), "merged again on a repeat"
    pixels(lora_engine, f"{PROMPT} <lora:style-kohya:0.5>")
    assert lora_layers(unet) == []
    assert any(not torch.equal(p, merged[name]) for name, p in base_weights().items()), "still the weight-1 merge"
    pixels(lora_engine, PROMPT)
    assert all(torch.equal(p, original[name]) for name, p in base_weights().items()), "base weights not restored"


def test_a_merged_pipeline_is_freed_once_the_model_is_gone(tmp_path):
    """The merge bookkeeping never keeps a switched-away model's pipeline (and its weights) alive."""
    import gc
    import weakref

    from diffusers import StableDiffusionPipeline

    from ldm_ui.config import AppConfig
    from ldm_ui.engine.lora import apply_loras, parse_lora_tags
    from tiny_models import build_tiny_sd

    build_tiny_sd(tmp_path / "models" / "diffusers" / "tiny-sd")
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "models" / "diffusers" / "tiny-sd")
    write_diffusers_lora(tmp_path / "loras" / "style.safetensors", random_lora(pipe.unet, pipe.text_encoder, seed=1))
    config = AppConfig(models_dir=tmp_path / "models", cache_dir=tmp_path / "cache", lora_dirs=[tmp_path / "loras"])
    apply_loras(config, pipe, parse_lora_tags("a <lora:style:1>")[1], fuse=True)
    gone = weakref.ref(pipe)
    del pipe
    gc.collect()
    assert gone() is None, "the LoRA merge registry kept the pipeline alive"
