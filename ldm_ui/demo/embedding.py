"""The demo textual-inversion embedding shipped for the built-in model: `demo-redcircle`.

It is composed, not trained: its two vectors are the demo text encoder's input embeddings of the tokens `red`
and `circle`, so `a demo-redcircle on a blue background` reads as `a red circle on a blue background`. That makes
it a small, exact example of the file format AUTOMATIC1111 reads (`emb_params`, one row per vector) and of what an
embedding does: it stands for tokens the vocabulary has no single word for.

    python -m ldm_ui.demo.embedding   # rewrites models/embeddings/demo-redcircle.safetensors
"""
from __future__ import annotations

from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "models" / "diffusers" / "demo-shapes"
EMBEDDING_PATH = ROOT / "models" / "embeddings" / "demo-redcircle.safetensors"
STANDS_FOR = "red circle"


def demo_embedding_vectors(model_dir: Path = MODEL_DIR) -> torch.Tensor:
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(model_dir / "tokenizer")
    encoder = CLIPTextModel.from_pretrained(model_dir / "text_encoder")
    ids = tokenizer(STANDS_FOR, add_special_tokens=False).input_ids
    return encoder.get_input_embeddings().weight[ids].detach().clone().contiguous()


def write_demo_embedding(path: Path = EMBEDDING_PATH, model_dir: Path = MODEL_DIR) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": demo_embedding_vectors(model_dir)}, str(path))
    return path


if __name__ == "__main__":
    print(write_demo_embedding())
