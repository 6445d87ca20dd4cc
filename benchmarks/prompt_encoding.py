"""What the prompt language costs: encoding a weighted 3-chunk prompt on an SD1.5-sized text encoder.

An SD1.5-sized CLIP text encoder (12 layers, width 768, CLIP's real 49,408-token tokenizer built offline from
open_clip_torch's table; random weights, which cost the same) encodes a job's positive and negative prompt:

  ours      build_conditioning on a weighted prompt of three 75-token chunks (parse, chunk, encode, weigh)
  same      the same three chunks of token ids, encoded plainly (the least any method that keeps all words does)
  diffusers the pipeline's own encode_prompt, which reads one chunk and drops the rest

and prints ours/same (target <= 1.5x) and ours/diffusers (for scale: three chunks are three encodes). It then runs
a 20-step job whose prompt has editing and alternation and counts text-encoder calls: one per distinct text, none
per step. Run: python benchmarks/prompt_encoding.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.5
WORDS = ("red", "blue", "castle", "forest", "river", "detailed", "painting", "light", "mountain", "sky")


def weighted_prompt(tokens: int) -> str:
    words = [WORDS[i % len(WORDS)] for i in range(tokens)]
    for i in range(0, tokens, 7):
        words[i] = f"({words[i]}:1.3)"
    return " ".join(words)


def median_seconds(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from ldm_ui.engine.clip_vocab import save_clip_tokenizer
    from ldm_ui.prompts.conditioning import build_conditioning

    diffusers_logging.set_verbosity_error()  # its "truncated" warning is the point of the comparison
    work = Path(tempfile.mkdtemp())
    save_clip_tokenizer(work / "tokenizer", work / "cache", pad_token="<|endoftext|>")
    tokenizer = CLIPTokenizer.from_pretrained(work / "tokenizer")
    torch.manual_seed(0)
    encoder = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                           num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                           bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)).eval()
    # a pipeline object only for its encode_prompt and its text-encoder slots; no UNet call is made
    pipe = StableDiffusionPipeline(vae=None, text_encoder=encoder, tokenizer=tokenizer, unet=None, scheduler=None,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    prompt, negative = weighted_prompt(210), "blurry, lowres, ugly"
    conditioning = build_conditioning(pipe, [prompt], [negative], 20)
    chunks = conditioning.pipeline_kwargs()["prompt_embeds"].shape[1] // 77
    ids = torch.tensor([tokenizer(prompt.replace("(", "").replace(":1.3)", ""), padding="max_length",
                                  max_length=77 * chunks).input_ids[:77 * chunks]]).reshape(chunks, 77)
    negative_ids = ids.clone()

    def ours():
        build_conditioning(pipe, [prompt], [negative], 20)

    def same():
        with torch.no_grad():
            encoder(ids)
            encoder(negative_ids)

    def diffusers():
        with torch.no_grad():
            pipe.encode_prompt([prompt], "cpu", 1, True, [negative])

    torch.set_num_threads(max(1, torch.get_num_threads()))
    ours_s, same_s, diffusers_s = (median_seconds(f, args.runs) for f in (ours, same, diffusers))
    print(f"prompt: {chunks} chunks of 75 tokens, weighted; negative padded to {chunks} chunks")
    print(f"ours       {ours_s * 1000:8.1f} ms")
    print(f"same ids   {same_s * 1000:8.1f} ms   ours/same = {ours_s / same_s:.2f}x (target <= {TARGET_RATIO}x)")
    print(f"diffusers  {diffusers_s * 1000:8.1f} ms   ours/diffusers = {ours_s / diffusers_s:.2f}x "
          f"(diffusers reads 1 chunk and drops {chunks - 1})")

    calls = []
    handle = encoder.register_forward_hook(lambda *_: calls.append(1))
    scheduled = build_conditioning(pipe, ["a [castle:forest:0.5] by the [river|sky], " + prompt], [negative], 20)
    encodes_at_build = len(calls)
    for step in range(1, 20):
        scheduled.update_for_step(step)
    handle.remove()
    texts = len({text for schedule in scheduled.positive + scheduled.negative for _, text in schedule})
    print(f"schedule over 20 steps: {texts} distinct texts, {encodes_at_build} encoder calls while building, "
          f"{len(calls) - encodes_at_build} during the 19 step updates")


if __name__ == "__main__":
    main()
