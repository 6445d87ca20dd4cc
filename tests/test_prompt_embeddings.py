"""Textual-inversion embeddings: safe loading of every layout, listing with problems named, use in prompts."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from ldm_ui.demo.embedding import EMBEDDING_PATH, demo_embedding_vectors  # noqa: E402
from ldm_ui.demo.judge import judge  # noqa: E402
from ldm_ui.prompts.conditioning import build_conditioning  # noqa: E402
from ldm_ui.prompts.embeddings import EmbeddingLibrary  # noqa: E402
from ldm_ui.prompts.embeddings import EmbeddingError, read_embedding  # noqa: E402
from tiny_models import build_tiny_sdxl  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[1] / "models" / "diffusers" / "demo-shapes"


@pytest.fixture(scope="module")
def demo():
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(DEMO_DIR)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Payload:
    """Unpickling this would run code: the restricted loader must refuse it without calling anything."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/ldm-ui-pickle-ran",))


def test_layouts_load(tmp_path):
    vectors = torch.randn(3, 128)
    save_file({"emb_params": vectors}, str(tmp_path / "a1111.safetensors"))
    torch.save({"string_to_param": {"*": vectors}, "name": "x", "step": 10, "string_to_token": {"*": 265}},
               tmp_path / "a1111.pt")
    torch.save({"<my-token>": vectors[0]}, tmp_path / "diffusers.bin")
    save_file({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(2, 1280)}, str(tmp_path / "xl.safetensors"))
    one = read_embedding(tmp_path / "a1111.safetensors")
    assert one.name == "a1111" and one.count == 3 and torch.equal(one.vectors[128], vectors)
    assert one.short_hash == hashlib.sha256((tmp_path / "a1111.safetensors").read_bytes()).hexdigest()[:12]
    assert torch.equal(read_embedding(tmp_path / "a1111.pt").vectors[128], vectors)
    assert read_embedding(tmp_path / "diffusers.bin").vectors[128].shape == (1, 128)
    xl = read_embedding(tmp_path / "xl.safetensors")
    assert xl.fits([768, 1280]) and not xl.fits([768, 1024]) and xl.count == 2


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = Path("/tmp/ldm-ui-pickle-ran")
    marker.unlink(missing_ok=True)
    torch.save({"emb_params": torch.randn(1, 128), "payload": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(EmbeddingError, match=r"evil\.pt: refused; .*weights-only"):
        read_embedding(tmp_path / "evil.pt")
    assert not marker.exists()


def test_listing_skips_broken_files_and_names_them(tmp_path, caplog):
    folder, extra = tmp_path / "embeddings", tmp_path / "more"
    folder.mkdir()
    extra.mkdir()
    save_file({"emb_params": torch.randn(1, 128)}, str(folder / "good.safetensors"))
    (folder / "truncated.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    save_file({"a": torch.randn(1, 8), "b": torch.randn(1, 8)}, str(folder / "twotensors.safetensors"))
    torch.save({"emb_params": torch.randn(1, 128), "payload": Payload()}, extra / "evil.pt")
    save_file({"emb_params": torch.randn(2, 128)}, str(extra / "other.safetensors"))
    library = EmbeddingLibrary([folder, extra])
    # before any file is read (the page is built without torch): every file's name; the scan keeps the good ones
    assert library.file_names() == ["good", "truncated", "twotensors", "evil", "other"]
    found = library.scan()
    assert sorted(found) == ["good", "other"]
    assert sorted(Path(p).name for p in library.problems) == ["evil.pt", "truncated.safetensors",
                                                              "twotensors.safetensors"]
    assert all(Path(p).name in message for p, message in library.problems.items())
    assert "truncated.safetensors" in caplog.text
    (folder / "truncated.safetensors").unlink()
    library.scan()
    assert sorted(Path(p).name for p in library.problems) == ["evil.pt", "twotensors.safetensors"]


def test_a_link_out_of_the_folder_is_not_listed(tmp_path):
    folder, outside = tmp_path / "embeddings", tmp_path / "secret"
    folder.mkdir()
    outside.mkdir()
    save_file({"emb_params": torch.randn(1, 128)}, str(outside / "private.safetensors"))
    (folder / "private.safetensors").symlink_to(outside / "private.safetensors")
    assert EmbeddingLibrary([folder]).scan() == {}


def test_shipped_demo_embedding_is_the_documented_one():
    assert torch.equal(read_embedding(EMBEDDING_PATH).vectors[128], demo_embedding_vectors())


def test_embedding_draws_what_it_stands_for_and_is_hashed(demo):
    embeddings = EmbeddingLibrary([EMBEDDING_PATH.parent]).scan()
    used = build_conditioning(demo, ["a demo-redcircle on a blue background"], [""], 20, 1, embeddings)
    plain = build_conditioning(demo, ["a red circle on a blue background"], [""], 20, 1, embeddings)
    assert torch.allclose(used.pipeline_kwargs()["prompt_embeds"], plain.pipeline_kwargs()["prompt_embeds"],
                          atol=1e-6)
    assert used.infotext == {"TI hashes": f"demo-redcircle: {embeddings['demo-redcircle'].short_hash}"}
    assert plain.infotext == {}
    without = build_conditioning(demo, ["a demo-redcircle on a blue background"], [""], 20, 1, {})
    assert not torch.allclose(without.pipeline_kwargs()["prompt_embeds"], used.pipeline_kwargs()["prompt_embeds"])
    image = demo(num_inference_steps=20, generator=torch.Generator().manual_seed(1),
                 **used.pipeline_kwargs()).images[0]
    verdict = judge(image)
    assert (verdict.color, verdict.shape, verdict.background) == ("red", "circle", "blue")


def test_embedding_in_the_negative_prompt_and_weighted(demo):
    embeddings = EmbeddingLibrary([EMBEDDING_PATH.parent]).scan()
    conditioning = build_conditioning(demo, ["a square"], ["(demo-redcircle:1.3)"], 20, 1, embeddings)
    assert "demo-redcircle" in conditioning.infotext["TI hashes"]
    plain = build_conditioning(demo, ["a square"], ["(red circle:1.3)"], 20, 1, embeddings)
    assert torch.allclose(conditioning.pipeline_kwargs()["negative_prompt_embeds"],
                          plain.pipeline_kwargs()["negative_prompt_embeds"], atol=1e-5)


def test_unknown_name_is_ordinary_text(demo):
    embeddings = EmbeddingLibrary([EMBEDDING_PATH.parent]).scan()
    with_library = build_conditioning(demo, ["a demo-bluesquare"], [""], 20, 1, embeddings)
    without = build_conditioning(demo, ["a demo-bluesquare"], [""], 20, 1, {})
    assert torch.equal(with_library.pipeline_kwargs()["prompt_embeds"], without.pipeline_kwargs()["prompt_embeds"])
    assert with_library.infotext == {}


def test_sdxl_embedding_feeds_both_encoders(tmp_path):
    pipe = build_tiny_sdxl(tmp_path / "tiny-sdxl")
    folder = tmp_path / "embeddings"
    folder.mkdir()
    # the character tokenizer: vectors for "xy" in each encoder's own input embeddings
    ids = pipe.tokenizer("xy", add_special_tokens=False).input_ids
    save_file({"clip_l": pipe.text_encoder.get_input_embeddings().weight[ids].detach().clone(),
               "clip_g": pipe.text_encoder_2.get_input_embeddings().weight[ids].detach().clone()},
              str(folder / "ab.safetensors"))
    save_file({"emb_params": torch.randn(1, 32)}, str(folder / "sd1only.safetensors"))  # one width: unusable
    embeddings = EmbeddingLibrary([folder]).scan()
    used = build_conditioning(pipe, ["a ab cat"], [""], 20, 1, embeddings)
    plain = build_conditioning(pipe, ["a xy cat"], [""], 20, 1, embeddings)
    for key in ("prompt_embeds", "pooled_prompt_embeds"):
        assert torch.allclose(used.pipeline_kwargs()[key], plain.pipeline_kwargs()[key], atol=1e-6)
    assert set(used.infotext["TI hashes"].split(": ")[:1]) == {"ab"}
    unusable = build_conditioning(pipe, ["a sd1only cat"], [""], 20, 1, embeddings)
    assert unusable.infotext == {}
    assert not np.allclose(unusable.pipeline_kwargs()["prompt_embeds"].numpy(),
                           used.pipeline_kwargs()["prompt_embeds"].numpy())
