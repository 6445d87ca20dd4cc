"""AUTOMATIC1111's prompt language: attention weights, long prompts in chunks, BREAK, prompt editing and
alternation, textual-inversion embeddings and clip skip, for SD1.x, SD2.x, SDXL and the built-in model.

The engine calls `conditioning.build_conditioning` once per batch and hands its tensors to the diffusers
pipeline. This package imports nothing itself: `embeddings` lists files without torch, so the UI can be built
and served before torch is imported (app.py).
"""
