"""The built-in demo model: loads offline from its folder, is deterministic, and draws what the prompt says."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the demo model must never need the network

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ldm_ui.demo import data  # noqa: E402
from ldm_ui.demo.judge import judge  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "diffusers" / "demo-shapes"
# (color, shape, background, seed): fixed seeds whose images the shipped model gets right
SEMANTIC_CASES = [
    ("red", "circle", "blue", 1),
    ("yellow", "square", "black", 2),
    ("white", "triangle", "green", 3),
    ("purple", "circle", "orange", 4),
]


@pytest.fixture(scope="module")
def pipe():
    from diffusers import DiffusionPipeline

    pipeline = DiffusionPipeline.from_pretrained(MODEL_DIR)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def _generate(pipe, prompts, seeds, steps=20):
    out = pipe(prompts, num_inference_steps=steps, output_type="np",
               generator=[torch.Generator().manual_seed(s) for s in seeds])
    return (out.images * 255).round().astype(np.uint8)


def test_loads_offline_as_a_standard_pipeline(pipe):
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert pipe.safety_checker is None
    assert pipe.vae.config.latent_channels == 4
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == data.SIZE
    weights_mb = sum(f.stat().st_size for f in MODEL_DIR.rglob("*.safetensors")) / 1e6
    assert weights_mb <= 30, f"demo weights must stay <= 30 MB, got {weights_mb:.1f} MB"


def test_same_seed_gives_identical_pixels(pipe):
    first = _generate(pipe, ["a red circle on a blue background"], [7], steps=5)
    second = _generate(pipe, ["a red circle on a blue background"], [7], steps=5)
    assert first.shape == (1, data.SIZE, data.SIZE, 3)
    np.testing.assert_array_equal(first, second)


def test_images_show_the_prompted_colors(pipe):
    prompts = [data.caption(color, shape, background) for color, shape, background, _ in SEMANTIC_CASES]
    images = _generate(pipe, prompts, [seed for *_, seed in SEMANTIC_CASES])
    for (color, _, background, seed), image in zip(SEMANTIC_CASES, images):
        verdict = judge(image)
        assert (verdict.color, verdict.background) == (color, background), (
            f"seed {seed}: asked for {color} on {background}, judged {verdict.color} on {verdict.background}")


def test_unknown_words_still_tokenize(pipe):
    ids = pipe.tokenizer("a cyan über").input_ids  # words the captions never use fall back to byte symbols
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    assert pipe.tokenizer.unk_token_id not in ids[1:-1]
    assert pipe.tokenizer.decode(ids, skip_special_tokens=True) == "a cyan über"


def test_judge_reads_every_combination_of_training_scenes():
    rng = np.random.default_rng(0)
    for color, shape, background in data.combinations():
        scene = data.make_scene(rng, color, shape, background)
        verdict = judge(scene.image)
        assert (verdict.color, verdict.shape, verdict.background) == (color, shape, background), scene.caption
        assert (verdict.mask == scene.mask).mean() > 0.97


def test_make_scene_is_deterministic_and_rejects_same_colors():
    a = data.make_scene(np.random.default_rng(3))
    b = data.make_scene(np.random.default_rng(3))
    assert a.caption == b.caption and a.bbox == b.bbox
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    with pytest.raises(ValueError, match="color != background"):
        data.make_scene(np.random.default_rng(0), "red", "circle", "red")
