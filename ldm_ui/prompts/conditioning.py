"""The one entry point the engine calls: prompts in, the pipeline's embeddings for every sampling step out.

    conditioning = build_conditioning(pipe, prompts, negative_prompts, steps, clip_skip, embeddings)
    pipe(**conditioning.pipeline_kwargs(), callback_on_step_end_tensor_inputs=[..., *conditioning.tensor_inputs])
    # in callback_on_step_end(pipe, i, t, kwargs): kwargs.update(conditioning.update_for_step(i + 1, guided) or {})

Each distinct text of every prompt's schedule is encoded once, before sampling; a schedule change only swaps
tensors in the step callback, in the layout the pipeline holds them (classifier-free guidance: negative rows
first, then positive, as diffusers concatenates them). Every text of a job is padded with empty chunks to the
job's longest, so positive and negative (and every step's texts) have the same length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ldm_ui.prompts.attention import parse_attention
from ldm_ui.prompts.embeddings import Embedding
from ldm_ui.prompts.encoding import (
    Chunk, EmbeddingMatcher, TextEncoder, chunk_runs, empty_chunk, encode_chunks, text_encoders,
)
from ldm_ui.prompts.schedule import prompt_schedule, text_for_step
from ldm_ui.requests import MAX_CLIP_SKIP, RequestError


@dataclass(frozen=True)
class Encoded:
    states: torch.Tensor  # [1, chunks * max_length, width (both encoders' on SDXL)]
    pooled: torch.Tensor | None  # [1, dim] on SDXL


class PromptConditioning:
    """The encoded schedules of one batch; `encodes` counts text-encoder calls (one per distinct text and encoder)."""

    def __init__(self, positive: list[list[tuple[int, str]]], negative: list[list[tuple[int, str]]],
                 encoded: dict[str, Encoded], infotext: dict[str, str], encodes: int):
        self.positive, self.negative, self.encoded = positive, negative, encoded
        self.infotext, self.encodes = infotext, encodes
        self.sdxl = next(iter(encoded.values())).pooled is not None
        self.changes_during_sampling = any(len(s) > 1 for s in positive + negative)

    @property
    def tensor_inputs(self) -> list[str]:
        """The `callback_on_step_end_tensor_inputs` that update_for_step replaces."""
        if not self.changes_during_sampling:
            return []
        return ["prompt_embeds", "add_text_embeds"] if self.sdxl else ["prompt_embeds"]

    def texts_at(self, step_index: int) -> tuple[list[str], list[str]]:
        return ([text_for_step(s, step_index) for s in self.positive],
                [text_for_step(s, step_index) for s in self.negative])

    def _stack(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        states = torch.cat([self.encoded[t].states for t in texts])
        pooled = torch.cat([self.encoded[t].pooled for t in texts]) if self.sdxl else None
        return states, pooled

    def pipeline_kwargs(self, step_index: int = 0) -> dict[str, torch.Tensor]:
        """prompt_embeds / negative_prompt_embeds (and the pooled pair on SDXL) for the first step of a call that
        starts at `step_index` of the schedule (0, or where an earlier stage left off)."""
        positive, negative = self.texts_at(step_index)
        (states, pooled), (negative_states, negative_pooled) = self._stack(positive), self._stack(negative)
        kwargs = {"prompt_embeds": states, "negative_prompt_embeds": negative_states}
        if self.sdxl:
            kwargs.update(pooled_prompt_embeds=pooled, negative_pooled_prompt_embeds=negative_pooled)
        return kwargs

    def update_for_step(self, step_index: int, guided: bool = True) -> dict[str, torch.Tensor] | None:
        """The callback_kwargs to replace before step `step_index` (from 0), or None when its texts are unchanged."""
        if step_index <= 0 or self.texts_at(step_index) == self.texts_at(step_index - 1):
            return None
        positive, negative = self.texts_at(step_index)
        states, pooled = self._stack(positive)
        if guided:
            negative_states, negative_pooled = self._stack(negative)
            states = torch.cat([negative_states, states])
            pooled = torch.cat([negative_pooled, pooled]) if self.sdxl else None
        update = {"prompt_embeds": states}
        if self.sdxl:
            update["add_text_embeds"] = pooled
        return update


class LastConditioning:
    """The last conditioning a model built, kept for the next batch or job that asks for the same one (as
    AUTOMATIC1111 keeps its last conds): a batch count of 8, or Generate pressed again, encodes once.

    The key holds everything the text encoders' output depends on besides their weights: the texts (after
    wildcards and other prompt transforms), the steps (the prompt schedule), the clip skip, the embeddings
    (their file hashes) and the LoRA tags with their weights and file hashes (a LoRA may change the text encoder).
    Each loaded model has its own (LoadedModel.last_conditioning); a model switch starts empty."""

    def __init__(self):
        self.key: tuple | None = None
        self.value: PromptConditioning | None = None

    def get(self, key: tuple, build) -> PromptConditioning:
        if key != self.key or self.value is None:
            self.key, self.value = None, None  # a build that fails leaves no stale entry
            self.value, self.key = build(), key
        return self.value


def check_clip_skip(clip_skip: int, encoders: list[TextEncoder]) -> None:
    layers = min(min(e.layers for e in encoders), MAX_CLIP_SKIP)
    if isinstance(clip_skip, bool) or not isinstance(clip_skip, int) or not 1 <= clip_skip <= layers:
        raise RequestError(f"clip skip must be a whole number from 1 to {layers} for this model "
                           f"(its text encoder has {min(e.layers for e in encoders)} layers), got {clip_skip!r}")


def ti_hashes(used: dict[str, Embedding]) -> str:
    """AUTOMATIC1111's `TI hashes` value: `name: shorthash, ...` (':' and ',' dropped from names)."""
    return ", ".join(f"{name.replace(':', '').replace(',', '')}: {e.short_hash}" for name, e in sorted(used.items()))


def build_conditioning(pipe, prompts: list[str], negative_prompts: list[str], steps: int, clip_skip: int = 1,
                       embeddings: dict[str, Embedding] | None = None, device=None) -> PromptConditioning:
    if len(prompts) != len(negative_prompts):
        raise ValueError(f"{len(prompts)} prompts but {len(negative_prompts)} negative prompts")
    encoders = text_encoders(pipe)
    check_clip_skip(clip_skip, encoders)
    positive = [prompt_schedule(p, steps) for p in prompts]
    negative = [prompt_schedule(p, steps) for p in negative_prompts]
    texts = list(dict.fromkeys(text for schedule in positive + negative for _, text in schedule))
    widths = [e.width for e in encoders]
    matchers = [EmbeddingMatcher(e, embeddings or {}, widths) for e in encoders]
    chunked: dict[str, list[list[Chunk]]] = {}
    for text in texts:
        runs = parse_attention(text)
        chunked[text] = [chunk_runs(encoder, runs, matcher)[0] for encoder, matcher in zip(encoders, matchers)]
    longest = max(len(chunks) for per_encoder in chunked.values() for chunks in per_encoder)
    used: dict[str, Embedding] = {}
    device = device or getattr(pipe, "_execution_device", None) or encoders[0].model.device
    encoded: dict[str, Encoded] = {}
    for text in texts:
        states, pooled = [], None
        for encoder, chunks in zip(encoders, chunked[text]):
            chunks = chunks + [empty_chunk(encoder)] * (longest - len(chunks))
            used.update({e.name: e for chunk in chunks for _, e in chunk.fixes})
            encoder_states, encoder_pooled = encode_chunks(encoder, chunks, clip_skip, device)
            states.append(encoder_states)
            pooled = encoder_pooled if encoder_pooled is not None else pooled
        encoded[text] = Encoded(torch.cat(states, dim=-1) if len(states) > 1 else states[0], pooled)
    infotext: dict[str, str] = {}
    if clip_skip > 1:
        infotext["Clip skip"] = str(clip_skip)
    if used:
        infotext["TI hashes"] = ti_hashes(used)
    return PromptConditioning(positive, negative, encoded, infotext, encodes=len(texts) * len(encoders))


def prompt_token_count(pipe, prompt: str, steps: int = 20,
                       embeddings: dict[str, Embedding] | None = None) -> tuple[int, int]:
    """(tokens, capacity) as the counter under a prompt shows them: "23/75", "98/150" once a second chunk starts.
    Over a schedule, the text with the most tokens counts."""
    encoders = text_encoders(pipe)
    encoder = encoders[0]
    matcher = EmbeddingMatcher(encoder, embeddings or {}, [e.width for e in encoders])
    best = (0, encoder.chunk_length)
    for _, text in prompt_schedule(prompt, steps):
        chunks, count = chunk_runs(encoder, parse_attention(text), matcher)
        best = max(best, (count, len(chunks) * encoder.chunk_length))
    return best
