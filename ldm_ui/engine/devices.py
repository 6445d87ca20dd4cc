"""Which device and dtype the engine runs on, and what it costs to get memory back: the torch side of loading.

Imported by the worker when it first loads a model (engine/models.py), so the UI is built and the page served
before torch is imported (app.py).
"""

from __future__ import annotations

import torch

from ldm_ui.config import AppConfig


def empty_device_caches() -> None:
    """Hand memory the caching allocators keep back to the device (CUDA, Apple MPS)."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def dtype_for(device: torch.device, choice: str = "auto") -> torch.dtype:
    """auto: fp16 halves VRAM on CUDA; MPS and CPU stay in fp32, where fp16 is slower or less reliable."""
    if choice == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[choice]


def placement_warnings(config: AppConfig, device: torch.device, dtype: torch.dtype) -> list[str]:
    """What the user asked for that does not do what they expect on this device (the app starts anyway)."""
    notes = []
    if (config.medvram or config.lowvram) and device.type != "cuda":
        flag = "--lowvram" if config.lowvram else "--medvram"
        notes.append(f"{flag} has no effect on {device.type}: offloading moves models between a CUDA GPU and the "
                     "CPU; models stay where they are")
    if device.type == "cpu" and dtype != torch.float32:
        notes.append(f"--dtype {str(dtype).split('.')[-1]} on the CPU works but is slow: the CPU computes "
                     "half precision much slower than float32")
    return notes


def compile_denoiser(denoiser, device: torch.device) -> None:
    """torch.compile the U-Net (or transformer) in place (channels_last first on CUDA, where convolutions prefer
    it); the first image of each size then waits for compilation, later ones run faster."""
    if device.type == "cuda":
        denoiser.to(memory_format=torch.channels_last)
    denoiser.compile(fullgraph=False, dynamic=False)
