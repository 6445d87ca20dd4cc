"""The initial noise of a batch: the seed's own, mixed with a variation seed's, or made at another size.

txt2img hands it to the pipeline as `latents=`; img2img and inpaint hand it to the scheduler, whose `add_noise`
noises the init latents with it (`samplers._add_noise_with`).

With no variation the noise is drawn exactly as diffusers' pipelines draw it (`randn_tensor` with each image's
CPU generator, in the dtype of the prompt embeddings), so an image made with a seed alone is the same image
whether or not the loop hands the noise over as `latents=`; the generators end in the same state, so the
ancestral samplers' later draws are unchanged too.

Variation (AUTOMATIC1111's "subseed"): the noise is the spherical interpolation from the seed's noise to the
variation seed's by `strength`. Seed resize: the noise of the seed at another width x height is placed centred
on the noise at the target size (cropped when it is larger), so a composition survives a change of size.
"""

from __future__ import annotations

import torch

from ldm_ui.engine.latent_math import slerp
from ldm_ui.requests import RequestError, VariationSeed


def draws_own_noise(model, variation: VariationSeed | None) -> bool:
    """Whether the loop can make this model's noise (U-Net models); DiT pipelines (SD3) draw their own, so a
    variation there is refused with the reason rather than silently dropped."""
    makes_noise = getattr(model.pipe, "unet", None) is not None
    if not makes_noise and variation is not None:
        raise RequestError(f"variation seeds work with U-Net models (SD 1.x, 2.x, SDXL and the demo); "
                           f"{model.entry.name} is a {model.family} model: set the variation strength to 0")
    return makes_noise


def noise_dtype(pipe) -> torch.dtype:
    """The dtype the pipeline's prepare_latents uses: its prompt embeddings', i.e. the text encoder's."""
    for name in ("text_encoder_2", "text_encoder", "unet"):
        module = getattr(pipe, name, None)
        if module is not None:
            return module.dtype
    return torch.float32


def latent_shape(pipe, width: int, height: int, channels: int | None = None) -> tuple[int, int, int]:
    """(channels, rows, columns) of one image's latent, by the pipeline's own rule (txt2img: the U-Net's input
    channels; img2img and inpaint pass the init latents' channels, which a 9-channel inpainting U-Net exceeds)."""
    factor = int(pipe.vae_scale_factor)
    channels = int(pipe.unet.config.in_channels) if channels is None else channels
    return channels, int(height) // factor, int(width) // factor


def draw(shape: tuple[int, int, int], generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """One image's noise, (1, C, H, W) on the CPU, drawn as diffusers' randn_tensor draws it."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor((1, *shape), generator=generator, device=torch.device("cpu"), dtype=dtype)


def paste_centred(small: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`target` with `small` over its centre; where `small` is the larger in a direction, its centre is cut."""
    out = target.clone()
    (sh, sw), (th, tw) = small.shape[-2:], target.shape[-2:]
    h, w = min(sh, th), min(sw, tw)
    ty, tx = (th - h) // 2, (tw - w) // 2  # where the shared window sits in each
    sy, sx = (sh - h) // 2, (sw - w) // 2
    out[..., ty:ty + h, tx:tx + w] = small[..., sy:sy + h, sx:sx + w]
    return out


def initial_noise(pipe, width: int, height: int, seeds: list[int], generators: list[torch.Generator],
                  variation: VariationSeed | None, variation_seeds: list[int],
                  channels: int | None = None) -> torch.Tensor:
    """(B, C, H, W) unscaled noise on the CPU for `seeds`, advancing `generators` as the pipeline would."""
    dtype = noise_dtype(pipe)
    shape = latent_shape(pipe, width, height, channels)
    resize = variation.resize_from if variation is not None else None
    source_shape = latent_shape(pipe, *resize, channels) if resize else shape
    noises = []
    for seed, generator, variation_seed in zip(seeds, generators, variation_seeds or [None] * len(seeds)):
        noise = draw(shape, generator, dtype)  # the pipeline's own draw, which also advances the generator
        if resize or (variation is not None and variation.strength > 0):
            source = noise if not resize else draw(source_shape, fresh_generator(seed), dtype)
            if variation is not None and variation.strength > 0:
                other = draw(source_shape, fresh_generator(variation_seed), dtype)
                source = slerp(source, other, variation.strength)
            noise = paste_centred(source, noise) if resize else source
        noises.append(noise)
    return torch.cat(noises)


def fresh_generator(seed: int) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(seed)


def variation_infotext(variation: VariationSeed | None, variation_seed: int | None) -> dict[str, object]:
    """The infotext keys AUTOMATIC1111 writes: the variation seed and strength only when the strength is not 0."""
    if variation is None:
        return {}
    entries: dict[str, object] = {}
    if variation.strength > 0 and variation_seed is not None:
        entries["Variation seed"] = variation_seed
        entries["Variation seed strength"] = f"{variation.strength:g}"
    if variation.resize_from:
        entries["Seed resize from"] = "{}x{}".format(*variation.resize_from)
    return entries
