"""Active LoRAs merged into the model's own weights, with the original weights kept to restore them exactly.

Unmerged, every LoRA layer adds two small matrix products (and a Python call) per forward: on the CPU an active
LoRA ran at 0.64-0.74x of the base model's speed. diffusers' `fuse_lora` merges the active adapters at their
weights into the base layers, and `unload_lora_weights` then removes peft's wrapper layers (diffusers' documented
way to keep fused weights), after which a step costs exactly what a base step costs. Before merging, the weights
the merge changes are copied (like AUTOMATIC1111's backup of network weights); `release` copies them back, so
"no LoRA" and "weight 0" still give the base model's pixels bit for bit (a merge and an unmerge in floating point
would not). After a release the adapters are loaded again from their files when a job asks for them.

    fusion = LoraFusion.of(pipe)
    fusion.release()                  # before the adapter set or weights change
    ...set_adapters(names, weights)
    fusion.fuse(key, names)           # merge what is active now; `key` says what that is
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

_fusions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # pipeline -> its LoraFusion

COMPONENT_NAMES = ("unet", "transformer", "text_encoder", "text_encoder_2")


def lora_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """peft's LoRA layers inside `module` (they hold the base layer and the adapters' matrices)."""
    from peft.tuners.lora import LoraLayer

    return [m for m in module.modules() if isinstance(m, LoraLayer)]


class LoraFusion:
    """One pipeline's merged state: which adapter set is merged, and the base weights it changed."""

    def __init__(self, pipe):
        # weakly: the registry's value must not keep its key (the pipeline) alive after a model switch
        self._pipe = weakref.ref(pipe)
        self.key: Any = None  # what is merged now (None: nothing)
        self._backups: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its weights before the merge)

    @property
    def pipe(self):
        pipe = self._pipe()
        if pipe is None:
            raise RuntimeError("the pipeline of this LoRA fusion is gone")
        return pipe

    @classmethod
    def of(cls, pipe) -> LoraFusion:
        fusion = _fusions.get(pipe)
        if fusion is None:
            fusion = _fusions[pipe] = cls(pipe)
        return fusion

    def components(self) -> list[str]:
        """The pipeline's components that take LoRAs (Flux's loader: transformer and CLIP, not its T5)."""
        loadable = getattr(self.pipe, "_lora_loadable_modules", None) or COMPONENT_NAMES
        return [name for name in COMPONENT_NAMES
                if name in loadable and isinstance(getattr(self.pipe, name, None), torch.nn.Module)]

    def fuse(self, key: Any, adapter_names: list[str]) -> None:
        """Merge the active adapters (at the weights set_adapters gave them) into the base weights."""
        if self.key is not None:
            self.release()
        layers = [layer for name in self.components() for layer in lora_layers(getattr(self.pipe, name))]
        touched = [layer.get_base_layer().weight for layer in layers
                   if any(a in layer.lora_A or a in getattr(layer, "lora_embedding_A", {}) for a in adapter_names)]
        # the copies wait in RAM, not in VRAM (as AUTOMATIC1111 keeps its backups); they go back only on a change
        self._backups = [(weight, weight.detach().to("cpu", copy=True)) for weight in touched]
        self.pipe.fuse_lora(components=self.components(), lora_scale=1.0, adapter_names=adapter_names)
        self.pipe.unload_lora_weights()  # the wrappers go; the merged base layers (the same tensors) stay
        self.key = key

    def release(self) -> None:
        """Put the exact original weights back (the adapters were unloaded when they were merged)."""
        if self.key is None:
            return
        with torch.no_grad():
            for weight, original in self._backups:
                weight.copy_(original)
        self._backups, self.key = [], None

    @property
    def merged(self) -> bool:
        return self.key is not None
