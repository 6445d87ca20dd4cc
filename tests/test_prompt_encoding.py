"""Weighted, chunked, scheduled encoding on the built-in model and tiny SD/SDXL pipelines, against diffusers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from ldm_ui.prompts.conditioning import build_conditioning, prompt_token_count  # noqa: E402
from ldm_ui.requests import RequestError  # noqa: E402
from tiny_models import build_tiny_sd, build_tiny_sdxl  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "diffusers" / "demo-shapes"


@pytest.fixture(scope="module")
def demo():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(DEMO_DIR)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    pipe = build_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory):
    pipe = build_tiny_sdxl(tmp_path_factory.mktemp("sdxl") / "tiny-sdxl")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def embeds(pipe, prompt, negative="", steps=20, clip_skip=1, embeddings=None):
    return build_conditioning(pipe, [prompt], [negative], steps, clip_skip, embeddings).pipeline_kwargs()


def pixels(pipe, steps=4, seed=1, **kwargs):
    out = pipe(num_inference_steps=steps, output_type="np", generator=torch.Generator().manual_seed(seed), **kwargs)
    return (out.images * 255).round().astype(np.uint8)


@pytest.mark.parametrize("name", ["demo", "tiny_sd", "tiny_sdxl"])
def test_plain_prompt_gives_the_pipelines_own_pixels(name, request):
    pipe = request.getfixturevalue(name)
    prompt = "a red circle on a blue background" if name == "demo" else "a red cat, sitting"
    plain = pixels(pipe, prompt=[prompt], negative_prompt=["blurry"])
    ours = pixels(pipe, **embeds(pipe, prompt, "blurry"))
    assert np.array_equal(plain, ours)
    weight_one = pixels(pipe, **embeds(pipe, prompt.replace("red", "(red:1.0)"), "(blurry:1.0)"))
    assert np.array_equal(plain, weight_one)


@pytest.mark.parametrize("name", ["demo", "tiny_sd", "tiny_sdxl"])
def test_weights_scale_exactly_their_tokens(name, request):
    """Weighted tokens change by their weight; every other token only by the one factor that restores the mean
    (one factor per text encoder on SDXL, as AUTOMATIC1111 weighs each encoder's output on its own)."""
    pipe = request.getfixturevalue(name)
    noun = "circle" if name == "demo" else "cat"
    plain = embeds(pipe, f"a red {noun}")["prompt_embeds"][0]
    weighted = embeds(pipe, f"a (red:1.5) {noun}")["prompt_embeds"][0]
    ids = pipe.tokenizer(f"a red {noun}").input_ids
    red_ids = pipe.tokenizer("red", add_special_tokens=False).input_ids
    red = [i for i, t in enumerate(ids) if t in red_ids]
    assert red
    others = [i for i in range(plain.shape[0]) if i not in red]
    widths = [pipe.text_encoder.config.hidden_size]
    if name == "tiny_sdxl":
        widths.append(pipe.text_encoder_2.config.hidden_size)
    start = 0
    for width in widths:
        ratio = weighted[:, start:start + width] / plain[:, start:start + width]
        restore = ratio[others].mean()
        assert torch.allclose(ratio[others], restore, atol=1e-4)
        assert torch.allclose(ratio[red], restore * 1.5, atol=1e-4)
        assert abs(restore.item() - 1.0) > 1e-4  # the mean really was restored
        assert weighted[:, start:start + width].mean().item() == pytest.approx(
            plain[:, start:start + width].mean().item(), rel=1e-4, abs=1e-6)
        start += width


def test_nested_brackets_equal_their_explicit_weight(demo):
    assert torch.allclose(embeds(demo, "a ((red)) circle")["prompt_embeds"],
                          embeds(demo, "a (red:1.21) circle")["prompt_embeds"], atol=1e-6)
    assert torch.allclose(embeds(demo, "a [red] circle")["prompt_embeds"],
                          embeds(demo, f"a (red:{1 / 1.1}) circle")["prompt_embeds"], atol=1e-6)


def test_edit_at_zero_is_the_target_prompt(demo):
    assert torch.equal(embeds(demo, "a [red:blue:0] circle")["prompt_embeds"],
                       embeds(demo, "a blue circle")["prompt_embeds"])


def test_long_prompt_is_chunked_not_cut(demo, tiny_sd):
    """The built-in model reads 14 tokens per chunk: words past the first chunk change the image."""
    base = "a red circle on a blue background " * 4
    short = embeds(demo, base + "yellow")["prompt_embeds"]
    assert short.shape[1] == 16 * 3  # 29 tokens: three chunks of BOS + 14 + EOS
    other = embeds(demo, base + "purple")["prompt_embeds"]
    assert torch.equal(short[:, :32], other[:, :32]) and not torch.equal(short[:, 32:], other[:, 32:])
    assert not np.array_equal(pixels(demo, **embeds(demo, base + "yellow")),
                              pixels(demo, **embeds(demo, base + "purple")))
    # 200 tokens on SD's 75-token chunks: the last word still changes the image
    long = "a" + ",a" * 98  # the character tokenizer: one token per character, 197 tokens
    first, second = embeds(tiny_sd, long + " x"), embeds(tiny_sd, long + " y")
    assert first["prompt_embeds"].shape[1] == 77 * 3
    assert not np.array_equal(pixels(tiny_sd, **first), pixels(tiny_sd, **second))


def test_positive_and_negative_have_the_same_length(demo):
    kwargs = embeds(demo, "a red circle " * 10, "blurry")
    assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape
    pixels(demo, **kwargs)  # the pipeline accepts them


def test_a_very_long_prompt_never_raises(demo):
    prompt = "(a [red:blue:0.5] circle:1.2), BREAK " * 100
    kwargs = embeds(demo, prompt[:4000], "ugly " * 500)
    assert kwargs["prompt_embeds"].shape == kwargs["negative_prompt_embeds"].shape
    pixels(demo, steps=2, **kwargs)


def test_break_starts_a_new_chunk(demo):
    broken = embeds(demo, "a red circle BREAK on a blue background")["prompt_embeds"]
    assert broken.shape[1] == 32
    # chunks are encoded as one batch, so equal to the separate encodings up to rounding
    assert torch.allclose(broken[:, :16], embeds(demo, "a red circle")["prompt_embeds"], atol=1e-5)
    assert torch.allclose(broken[:, 16:], embeds(demo, "on a blue background")["prompt_embeds"], atol=1e-5)


def test_comma_backtrack_moves_the_last_words_to_the_next_chunk(demo):
    """A full chunk hands the words after its last comma (within 20 tokens) to the next chunk, as AUTOMATIC1111."""
    rest = "a blue square on a green background red square on a circle"
    kwargs = embeds(demo, "red circle, " + rest)["prompt_embeds"]  # 15 tokens, the comma is the 3rd
    assert kwargs.shape[1] == 32
    assert torch.allclose(kwargs[:, :16], embeds(demo, "red circle,")["prompt_embeds"], atol=1e-5)
    assert torch.allclose(kwargs[:, 16:], embeds(demo, rest)["prompt_embeds"], atol=1e-5)


def test_token_count(demo, tiny_sd):
    assert prompt_token_count(demo, "a red circle") == (3, 14)
    assert prompt_token_count(demo, "a red circle on a blue background " * 3) == (14 + 7, 28)
    assert prompt_token_count(tiny_sd, "abc") == (3, 75)
    assert prompt_token_count(tiny_sd, "a" * 80) == (80, 150)


def run_with_observer(pipe, conditioning, steps, seed=1):
    """Sample, recording the prompt_embeds each step really used (before the callback swaps the next ones in)."""
    seen = []

    def callback(pipeline, step, timestep, callback_kwargs):
        seen.append(callback_kwargs["prompt_embeds"].clone())
        return conditioning.update_for_step(step + 1, pipeline.do_classifier_free_guidance) or {}

    inputs = ["latents", *{"prompt_embeds", *conditioning.tensor_inputs}]
    out = pipe(num_inference_steps=steps, output_type="np", generator=torch.Generator().manual_seed(seed),
               callback_on_step_end=callback, callback_on_step_end_tensor_inputs=inputs,
               **conditioning.pipeline_kwargs())
    return seen, out.images


@pytest.mark.parametrize("name", ["demo", "tiny_sdxl"])
def test_prompt_editing_switches_at_its_step(name, request):
    pipe = request.getfixturevalue(name)
    steps = 6
    conditioning = build_conditioning(pipe, ["a [red:blue:3] circle"], ["[green|black]"], steps)
    assert conditioning.encodes == 4 * (2 if name == "tiny_sdxl" else 1)  # once per text, none per step
    seen, _ = run_with_observer(pipe, conditioning, steps)
    red, blue = (embeds(pipe, f"a {c} circle")["prompt_embeds"] for c in ("red", "blue"))
    green, black = (embeds(pipe, c)["prompt_embeds"] for c in ("green", "black"))
    # step i reads "red" while i <= 3 (AUTOMATIC1111's rule); the negative alternates a, a, b, a, b, a
    expected = [(green, red), (green, red), (black, red), (green, red), (black, blue), (green, blue)]
    for step, (negative, positive) in enumerate(expected):
        assert torch.equal(seen[step], torch.cat([negative, positive])), f"step {step}"


def test_prompt_editing_changes_the_image(demo):
    plain = pixels(demo, steps=8, **embeds(demo, "a red circle on a blue background", steps=8))
    _, edited = run_with_observer(demo, build_conditioning(demo, ["a [red:yellow:4] circle on a blue background"],
                                                           [""], 8), 8)
    assert not np.array_equal(plain, (edited * 255).round().astype(np.uint8))


def test_sdxl_uses_both_encoders_and_pools_the_first_chunk(tiny_sdxl):
    kwargs = embeds(tiny_sdxl, "a red cat")
    assert kwargs["prompt_embeds"].shape == (1, 77, 32 + 24) and kwargs["pooled_prompt_embeds"].shape == (1, 24)
    weighted = embeds(tiny_sdxl, "a (red:1.4) cat")["prompt_embeds"]
    changed = (weighted - kwargs["prompt_embeds"]).abs()[0]
    assert changed[:, :32].sum() > 0 and changed[:, 32:].sum() > 0  # both encoders' states are weighted
    first_chunk = "a red cat, " + "b" * 67  # 75 tokens: one per character, the comma one more
    long = embeds(tiny_sdxl, first_chunk + " " + "c" * 30)
    assert long["prompt_embeds"].shape[1] == 154
    # the first chunk's pooled output (encoded in a batch of two chunks, so equal up to rounding)
    assert torch.allclose(long["pooled_prompt_embeds"], embeds(tiny_sdxl, first_chunk)["pooled_prompt_embeds"],
                          atol=1e-5)


def test_clip_skip_takes_the_earlier_layer(demo, tiny_sdxl):
    ids = demo.tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = demo.text_encoder(ids, output_hidden_states=True).hidden_states
        expected = demo.text_encoder.final_layer_norm(hidden[-2])
    conditioning = build_conditioning(demo, ["a red circle"], [""], 20, clip_skip=2)
    assert torch.equal(conditioning.pipeline_kwargs()["prompt_embeds"], expected)
    assert conditioning.infotext == {"Clip skip": "2"}
    assert build_conditioning(demo, ["a red circle"], [""], 20, clip_skip=1).infotext == {}
    # SDXL: clip skip 2 is diffusers' clip_skip=1 (one layer before the penultimate)
    ours = embeds(tiny_sdxl, "a red cat", clip_skip=2)
    theirs = tiny_sdxl.encode_prompt(["a red cat"], device="cpu", num_images_per_prompt=1,
                                     do_classifier_free_guidance=True, negative_prompt=[""], clip_skip=1)
    assert torch.equal(ours["prompt_embeds"], theirs[0])
    with pytest.raises(RequestError, match=r"clip skip must be a whole number from 1 to 3 .* got 4"):
        build_conditioning(demo, ["a"], [""], 20, clip_skip=4)
