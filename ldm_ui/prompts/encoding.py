"""Weighted, chunked text encoding with AUTOMATIC1111's rules, for each text encoder a pipeline has.

A prompt's weighted runs are tokenized and packed into chunks of (max length - 2) tokens, 75 on Stable Diffusion
and 14 on the built-in model; each chunk is wrapped in BOS ... EOS, padded, and encoded on its own, and the chunks'
states are concatenated along the sequence, so no word is dropped. As in AUTOMATIC1111, `BREAK` starts a new
chunk, a full chunk moves the words after its last comma (within 20 tokens) to the next one, and an embedding
never straddles two chunks. Weights scale each token's output state and the chunk is then rescaled to its
original mean; all weights 1 leave the encoder's output untouched, bit for bit.

Layers (`clip_skip`, counted from the end as AUTOMATIC1111 counts): SD1.x/SD2.x and the built-in model take
layer -clip_skip through the final layer norm (1 is the encoder's output, what diffusers uses); SDXL takes layer
-(clip_skip + 1) of both encoders without it (1 is the penultimate layer diffusers uses) and its pooled output
from the second encoder's first chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ldm_ui.prompts.attention import Run
from ldm_ui.prompts.embeddings import Embedding

COMMA_BACKTRACK_TOKENS = 20  # AUTOMATIC1111's default "comma padding backtrack"
EMBEDDING_PLACEHOLDER_ID = 0  # any id works: the hook below overwrites its state


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)  # (offset in tokens incl. BOS, embedding)


@dataclass
class TextEncoder:
    """One tokenizer + text encoder pair, with the rules that pick its output layer."""

    tokenizer: object
    model: torch.nn.Module
    sdxl: bool  # hidden_states[-(clip_skip + 1)], no final layer norm
    pooled: bool  # its projected output is SDXL's pooled embedding

    @property
    def max_length(self) -> int:
        return min(int(self.tokenizer.model_max_length), int(self.model.config.max_position_embeddings))

    @property
    def chunk_length(self) -> int:
        return self.max_length - 2

    @property
    def width(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]


def text_encoders(pipe) -> list[TextEncoder]:
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    found = []
    for suffix in ("", "_2"):
        tokenizer, model = getattr(pipe, f"tokenizer{suffix}", None), getattr(pipe, f"text_encoder{suffix}", None)
        if tokenizer is not None and model is not None:
            found.append(TextEncoder(tokenizer, model, sdxl=sdxl, pooled=sdxl and suffix == "_2"))
    if not found:
        raise ValueError("this pipeline has no text encoder to read a prompt with")
    return found


class EmbeddingMatcher:
    """Finds embedding names in token ids: the token sequence of a name, longest match first."""

    def __init__(self, encoder: TextEncoder, embeddings: dict[str, Embedding], widths: list[int]):
        """`widths`: every text encoder's of the model; an embedding must have vectors for all of them."""
        usable = [e for e in embeddings.values() if e.fits(widths)]
        self.by_first: dict[int, list[tuple[list[int], Embedding]]] = {}
        for embedding, ids in zip(usable, encoder.ids([e.name for e in usable]) if usable else []):
            if ids:
                self.by_first.setdefault(ids[0], []).append((ids, embedding))
        for candidates in self.by_first.values():
            candidates.sort(key=lambda item: -len(item[0]))

    def at(self, tokens: list[int], position: int) -> tuple[Embedding | None, int]:
        for ids, embedding in self.by_first.get(tokens[position], ()):
            if tokens[position:position + len(ids)] == ids:
                return embedding, len(ids)
        return None, 0


def chunk_runs(encoder: TextEncoder, runs: list[Run], matcher: EmbeddingMatcher) -> tuple[list[Chunk], int]:
    """AUTOMATIC1111's tokenize_line: weighted runs -> chunks of exactly max_length tokens each, and the token
    count the prompt box shows (every chunk but the last counts in full)."""
    size = encoder.chunk_length
    tokenizer = encoder.tokenizer
    comma = tokenizer.convert_tokens_to_ids(",</w>") if ",</w>" in tokenizer.get_vocab() else None
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1
    count = 0

    def close_chunk(last: bool = False) -> None:
        nonlocal chunk, last_comma, count
        count += len(chunk.tokens) if last else size
        chunks.append(wrap(encoder, chunk))
        chunk, last_comma = Chunk(), -1

    texts = [run.text for run in runs if not run.is_break]
    ids_per_text = iter(encoder.ids(texts))
    for run in runs:
        if run.is_break:
            close_chunk()
            continue
        tokens = next(ids_per_text)
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == comma:
                last_comma = len(chunk.tokens)
            elif (len(chunk.tokens) == size and last_comma != -1
                  and len(chunk.tokens) - last_comma <= COMMA_BACKTRACK_TOKENS):
                cut = last_comma + 1
                moved = Chunk(chunk.tokens[cut:], chunk.weights[cut:],
                              [(offset - cut, e) for offset, e in chunk.fixes if offset >= cut])
                chunk = Chunk(chunk.tokens[:cut], chunk.weights[:cut], [f for f in chunk.fixes if f[0] < cut])
                close_chunk()
                chunk = moved
            if len(chunk.tokens) == size:
                close_chunk()
            embedding, length = matcher.at(tokens, position)
            if embedding is None:
                chunk.tokens.append(token)
                chunk.weights.append(run.weight)
                position += 1
                continue
            if len(chunk.tokens) + embedding.count > size:
                close_chunk()
            chunk.fixes.append((len(chunk.tokens), embedding))
            chunk.tokens += [EMBEDDING_PLACEHOLDER_ID] * embedding.count
            chunk.weights += [run.weight] * embedding.count
            position += length
    if chunk.tokens or not chunks:
        close_chunk(last=True)
    return chunks, count


def wrap(encoder: TextEncoder, chunk: Chunk) -> Chunk:
    """BOS + tokens + EOS + padding (the tokenizer's pad id, as the pipeline's own tokenization pads)."""
    tokenizer = encoder.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fill = encoder.chunk_length - len(chunk.tokens)
    return Chunk([tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id] + [pad] * fill,
                 [1.0, *chunk.weights, 1.0] + [1.0] * fill, [(offset + 1, e) for offset, e in chunk.fixes])


def empty_chunk(encoder: TextEncoder) -> Chunk:
    return wrap(encoder, Chunk())


def _final_layer_norm(model):
    return getattr(model, "text_model", model).final_layer_norm


@torch.no_grad()
def encode_chunks(encoder: TextEncoder, chunks: list[Chunk], clip_skip: int, device) -> tuple[torch.Tensor,
                                                                                              torch.Tensor | None]:
    """[1, len(chunks) * max_length, width] states (weighted) and, for SDXL's second encoder, the pooled [1, dim]."""
    model = encoder.model
    ids = torch.tensor([c.tokens for c in chunks], dtype=torch.long, device=device)
    fixes = [(row, offset, e.vectors[encoder.width]) for row, c in enumerate(chunks) for offset, e in c.fixes]
    handle = None
    if fixes:
        def put_embeddings(_module, _inputs, output):
            for row, offset, vectors in fixes:
                output[row, offset:offset + vectors.shape[0]] = vectors.to(output.device, output.dtype)
            return output

        handle = model.get_input_embeddings().register_forward_hook(put_embeddings)
    try:
        hidden = encoder.sdxl or clip_skip > 1
        output = model(ids, output_hidden_states=True) if hidden else model(ids)
    finally:
        if handle is not None:
            handle.remove()
    if encoder.sdxl:
        states = output.hidden_states[-(clip_skip + 1)]
    elif clip_skip > 1:
        states = _final_layer_norm(model)(output.hidden_states[-clip_skip])
    else:
        states = output[0]
    pooled = output.text_embeds[:1] if encoder.pooled else None
    weights = [c.weights for c in chunks]
    if any(w != 1.0 for row in weights for w in row):
        multipliers = torch.tensor(weights, dtype=states.dtype, device=states.device)
        original_mean = states.mean(dim=(1, 2), keepdim=True)
        states = states * multipliers.unsqueeze(-1)
        states = states * (original_mean / states.mean(dim=(1, 2), keepdim=True))
    return states.reshape(1, -1, states.shape[-1]), pooled
