"""AUTOMATIC1111's prompt language: attention weights, long prompts in chunks, BREAK, prompt editing and
alternation, textual-inversion embeddings and clip skip, for SD1.x, SD2.x, SDXL and the built-in model.

The engine calls `build_conditioning` once per batch and hands its tensors to the diffusers pipeline.
"""

from ldm_ui.prompts.conditioning import (  # noqa: F401
    LastConditioning, MAX_CLIP_SKIP, PromptConditioning, build_conditioning, prompt_token_count,
)
from ldm_ui.prompts.embeddings import Embedding, EmbeddingLibrary, embedding_dirs  # noqa: F401
