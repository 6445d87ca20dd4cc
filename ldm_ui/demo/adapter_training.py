"""What the demo LoRA and demo ControlNet trainers share: the frozen demo pipeline, cached latents and captions,
and one seeded noise draw per step (the same noising the demo model itself was trained with)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ldm_ui.demo import train


@dataclass
class FrozenParts:
    pipe: object
    scaling_factor: float
    noise_scheduler: object


def load_frozen(model_dir: Path) -> FrozenParts:
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True, safety_checker=None)
    for module in (pipe.vae, pipe.text_encoder, pipe.unet):
        module.requires_grad_(False).eval()
    pipe.set_progress_bar_config(disable=True)
    return FrozenParts(pipe, float(pipe.vae.config.scaling_factor), DDPMScheduler.from_config(pipe.scheduler.config))


@torch.no_grad()
def encode_images(parts: FrozenParts, images: np.ndarray) -> torch.Tensor:
    return train.encode_means(parts.pipe.vae, train.to_tensor(images), batch=128) * parts.scaling_factor


@torch.no_grad()
def encode_captions(parts: FrozenParts, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings of each distinct caption, index of each caption into them); index 0 is the empty caption."""
    distinct = ["", *sorted(set(captions) - {""})]
    tokenizer = parts.pipe.tokenizer
    ids = tokenizer(distinct, padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                    return_tensors="pt").input_ids
    embeddings = parts.pipe.text_encoder(ids)[0]
    lookup = {caption: i for i, caption in enumerate(distinct)}
    return embeddings, torch.tensor([lookup[c] for c in captions])


def noisy_batch(parts: FrozenParts, latents: torch.Tensor, caption_index: torch.Tensor, batch: int,
                caption_dropout: float, generator: torch.Generator):
    """Pick a batch, noise it at random timesteps; returns (indices, noisy, noise, timesteps, caption rows)."""
    index = torch.randint(len(latents), (batch,), generator=generator)
    noise = torch.randn(latents[index].shape, generator=generator)
    t = torch.randint(parts.noise_scheduler.config.num_train_timesteps, (batch,), generator=generator)
    noisy = parts.noise_scheduler.add_noise(latents[index], noise, t)
    rows = caption_index[index].clone()
    rows[torch.rand(batch, generator=generator) < caption_dropout] = 0
    return index, noisy, noise, t, rows


def optimizer_step(opt: torch.optim.Optimizer, params: list, loss: torch.Tensor, step: int, total: int,
                   peak_lr: float) -> None:
    """One optimizer step, gradients clipped to norm 1, at the adapters' schedule: 50 warmup steps, then cosine
    decay to 10% of the peak."""
    train.optimizer_step(opt, loss, train.lr_at(step, total, peak_lr, warmup=50, floor=0.1), clip=params)


class Log:
    def __init__(self, name: str, total: int):
        self.name, self.total, self.t0 = name, total, time.time()

    def __call__(self, step: int, loss: float) -> None:
        elapsed = time.time() - self.t0
        eta = elapsed / max(step, 1) * (self.total - step)
        print(f"[{self.name}] step {step}/{self.total} loss {loss:.4f} ({elapsed:.0f} s, ETA {eta:.0f} s)",
              flush=True)

    def out_of_time(self, step: int, max_minutes: float | None) -> bool:
        """True (and says so) once the run has used its wall-clock budget."""
        if max_minutes is None or time.time() - self.t0 <= max_minutes * 60:
            return False
        print(f"[{self.name}] stopping at step {step}: the {max_minutes:g}-minute budget is spent", flush=True)
        return True
