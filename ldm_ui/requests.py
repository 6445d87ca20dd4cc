"""Typed requests for every task, validated on creation, and the events a job emits.

Nothing here imports torch or Gradio: the UI, the HTTP API and the tests build the same requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from PIL import Image

from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.results import TaskResult

MIN_SIZE, MAX_SIZE = 64, 2048
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_BATCH_SIZE = 8
MAX_BATCH_COUNT = 100
MAX_PROMPT_CHARS = 4000
MAX_SEED = 2**32 - 1
MAX_CLIP_SKIP = 12
MAX_IMAGE_PIXELS = 4096 * 4096
RESIZE_MODES = ("just resize", "crop and resize", "resize and fill")


class RequestError(ValueError):
    """A request value outside what is allowed; the message names the value and the allowed range."""


def _check_int(name: str, value: Any, low: int, high: int, extra: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be a whole number between {low} and {high}{extra}, got {value!r}")
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high}{extra}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number between {low:g} and {high:g}, got {value!r}")
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low:g} and {high:g}, got {value:g}")


def check_size(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value % 8 or not MIN_SIZE <= value <= MAX_SIZE:
        raise RequestError(f"{name} must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE}, got {value!r}")


def check_prompt(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise RequestError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > MAX_PROMPT_CHARS:
        raise RequestError(f"{name} is {len(value):,} characters long; the limit is {MAX_PROMPT_CHARS:,}")
    if "\x00" in value:
        raise RequestError(f"{name} contains a NUL character, which is not allowed")


def check_image(name: str, value: Any) -> None:
    if not isinstance(value, Image.Image):
        raise RequestError(f"{name} must be an image, got {type(value).__name__}")
    w, h = value.size
    if w < 8 or h < 8:
        raise RequestError(f"{name} is {w}x{h}; images must be at least 8x8 pixels")
    if w * h > MAX_IMAGE_PIXELS:
        raise RequestError(f"{name} is {w}x{h} = {w * h:,} pixels; the limit is {MAX_IMAGE_PIXELS:,} pixels")



MAX_CONTROLNET_UNITS = 3
MAX_CONTROL_WEIGHT = 2.0


@dataclass(frozen=True, kw_only=True, eq=False)  # eq=False: hashable by identity although it holds an image
class ControlNetUnit:
    """One ControlNet: its model, control image and preprocessor, strength and the part of the steps it acts on."""

    model: str
    image: Image.Image
    preprocessor: str = "none"
    weight: float = 1.0  # diffusers' controlnet_conditioning_scale
    guidance_start: float = 0.0  # fractions of the sampling steps
    guidance_end: float = 1.0
    canny_low: int = 100
    canny_high: int = 200
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise RequestError(f"ControlNet model must be a model name, got {self.model!r}")
        check_image("ControlNet image", self.image)
        # the name is checked on the worker, where extensions' preprocessors are known too
        if not isinstance(self.preprocessor, str) or not self.preprocessor.strip():
            raise RequestError(f"ControlNet preprocessor must be a name such as 'canny' or 'none', "
                               f"got {self.preprocessor!r}")
        _check_float("ControlNet weight", self.weight, 0.0, MAX_CONTROL_WEIGHT)
        _check_float("ControlNet guidance start", self.guidance_start, 0.0, 1.0)
        _check_float("ControlNet guidance end", self.guidance_end, 0.0, 1.0)
        if self.guidance_start > self.guidance_end:
            raise RequestError(f"ControlNet guidance start ({self.guidance_start:g}) must not be after its "
                               f"guidance end ({self.guidance_end:g})")
        _check_int("Canny low threshold", self.canny_low, 0, 255)
        _check_int("Canny high threshold", self.canny_high, 0, 255)
        if not isinstance(self.enabled, bool):
            raise RequestError(f"ControlNet enabled must be true or false, got {self.enabled!r}")


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """Settings every generation task shares. width/height None means the model's native size."""

    task: ClassVar[str] = "txt2img"

    prompt: str
    negative_prompt: str = ""
    model: str | None = None
    sampler: str = "Euler a"
    steps: int = 20
    cfg_scale: float = 7.0
    width: int | None = None
    height: int | None = None
    seed: int = -1
    batch_count: int = 1
    batch_size: int = 1
    # None: the app's setting; otherwise one of approx | full | off
    preview_method: str | None = None
    preview_every_n_steps: int | None = None
    # extra name/value pairs written into the infotext (extensions, presets)
    extra_infotext: dict[str, str] = field(default_factory=dict)
    controlnets: tuple[ControlNetUnit, ...] = ()
    # the text-encoder layer counted from the end (AUTOMATIC1111's Clip skip); None: the app's setting
    clip_skip: int | None = None
    # False: the images come back in the job's events only, nothing is written to outputs/ (the HTTP API's
    # save_images=false, AUTOMATIC1111's default there)
    save_images: bool = True
    # a VAE choice (Automatic, None or a name from models/VAE) for this job only: the model's own choice is back
    # after it (the HTTP API's override_settings.sd_vae); None: the loaded model's current choice
    vae: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_prompt("prompt", self.prompt)
        check_prompt("negative prompt", self.negative_prompt)
        if self.sampler not in SAMPLER_NAMES:
            raise RequestError(f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_float("CFG scale", self.cfg_scale, 0.0, MAX_CFG)
        for name in ("width", "height"):
            if getattr(self, name) is not None:
                check_size(name, getattr(self, name))
        _check_int("seed", self.seed, -1, MAX_SEED, " (-1 picks a random seed)")
        _check_int("batch size", self.batch_size, 1, MAX_BATCH_SIZE)
        _check_int("batch count", self.batch_count, 1, MAX_BATCH_COUNT)
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise RequestError(f"model must be a model name, got {self.model!r}")
        if self.preview_method not in (None, "auto", "approx", "full", "off"):
            raise RequestError(f"preview method must be auto, approx, full or off, got {self.preview_method!r}")
        if self.preview_every_n_steps is not None:
            _check_int("preview every N steps", self.preview_every_n_steps, 1, MAX_STEPS)
        if self.clip_skip is not None:
            _check_int("clip skip", self.clip_skip, 1, MAX_CLIP_SKIP)
        if not isinstance(self.controlnets, tuple) or not all(isinstance(u, ControlNetUnit) for u in self.controlnets):
            raise RequestError(f"controlnets must be a tuple of ControlNetUnit, got {self.controlnets!r:.80}")
        if len(self.controlnets) > MAX_CONTROLNET_UNITS:
            raise RequestError(f"at most {MAX_CONTROLNET_UNITS} ControlNet units per job, got {len(self.controlnets)}")
        if not isinstance(self.save_images, bool):
            raise RequestError(f"save images must be true or false, got {self.save_images!r}")
        if self.vae is not None and (not isinstance(self.vae, str) or not self.vae.strip()):
            raise RequestError(f"VAE must be Automatic, None or a VAE name, got {self.vae!r}")

    def with_changes(self, **changes: Any) -> GenerationRequest:
        return replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """Field values by name, images left out (for logs, presets and the API)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not isinstance(getattr(self, f.name), Image.Image)}


MAX_HIRES_SCALE = 4.0


def upscale_sizes(width: int, height: int, scale: float, resize_width: int, resize_height: int,
                  multiple: int = 1) -> tuple[tuple[int, int], tuple[int, int]]:
    """(size to upscale to, size after a centre crop) for "upscale by `scale`" or, when either is set, "resize to
    resize_width x resize_height" (0 on one side keeps the aspect; both: cover the size, then crop to it), with
    every side a multiple of `multiple` (hires: 8, for whole latent cells)."""
    floor = lambda value: max(multiple, int(value) // multiple * multiple)  # noqa: E731
    ceil = lambda value: -(-int(math.ceil(value)) // multiple) * multiple  # noqa: E731
    rw, rh = resize_width, resize_height
    if not (rw or rh):
        size = (floor(width * scale), floor(height * scale))
        return size, size
    if not rh:
        return ((rw, floor(rw * height / width)),) * 2
    if not rw:
        return ((floor(rh * width / height), rh),) * 2
    if width / height < rw / rh:
        return (rw, max(rh, ceil(rw * height / width))), (rw, rh)
    return (max(rw, ceil(rh * width / height)), rh), (rw, rh)


@dataclass(frozen=True, kw_only=True)
class HiresFix:
    """txt2img's second pass: upscale each first-pass image, then denoise it again at the larger size (img2img).

    The target is `scale` times the first pass, or resize_width x resize_height (0 on one side keeps the aspect;
    both set: upscaled to cover that size, then centre-cropped to it). `upscaler` is a latent mode ("Latent",
    "Latent (bicubic)", ...) or a pixel upscaler (Lanczos, Nearest, a learned model); the name is checked on the
    worker, which knows the installed models. steps 0: as many as the first pass.
    """

    upscaler: str = "Latent"
    scale: float = 2.0
    resize_width: int = 0
    resize_height: int = 0
    steps: int = 0
    denoising_strength: float = 0.7
    sampler: str | None = None  # None: the first pass's sampler
    prompt: str = ""  # "": the first pass's prompt
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.upscaler, str) or not self.upscaler.strip():
            raise RequestError(f"hires upscaler must be an upscaler name such as 'Latent' or 'Lanczos', "
                               f"got {self.upscaler!r}")
        _check_float("hires upscale factor", self.scale, 1.0, MAX_HIRES_SCALE)
        for name in ("resize_width", "resize_height"):
            value = getattr(self, name)
            if value != 0:
                check_size(f"hires {name.replace('_', ' ')} (0 = from the upscale factor)", value)
        _check_int("hires steps", self.steps, 0, MAX_STEPS, " (0 = same as the first pass)")
        _check_float("hires denoising strength", self.denoising_strength, 0.0, 1.0)
        if self.sampler is not None and self.sampler not in SAMPLER_NAMES:
            raise RequestError(f"unknown hires sampler {self.sampler!r}; choose one of: {', '.join(SAMPLER_NAMES)}")
        check_prompt("hires prompt", self.prompt)
        check_prompt("hires negative prompt", self.negative_prompt)

    @property
    def resizes(self) -> bool:
        return bool(self.resize_width or self.resize_height)

    def sizes(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """((width, height) the first pass is upscaled to, (width, height) after the centre crop), in multiples
        of 8; raises RequestError past MAX_SIZE."""
        upscaled, final = upscale_sizes(width, height, self.scale, self.resize_width, self.resize_height, 8)
        for what, (w, h) in (("hires size", final), ("hires upscaled size", upscaled)):
            if not (MIN_SIZE <= w <= MAX_SIZE and MIN_SIZE <= h <= MAX_SIZE):
                raise RequestError(f"{what} would be {w}x{h} from {width}x{height}; each side must be between "
                                   f"{MIN_SIZE} and {MAX_SIZE} px (lower the upscale factor or the resize size)")
        return upscaled, final

    def steps_for(self, first_pass_steps: int) -> int:
        return self.steps or first_pass_steps


@dataclass(frozen=True, kw_only=True)
class VariationSeed:
    """AUTOMATIC1111's "Extra" seed settings: a second seed whose noise is mixed in, and a seed-resize size.

    strength 0 is the seed's noise alone, 1 the variation seed's; `seed` -1 picks a random one per job.
    resize_from_width/height: the size the seed's noise is made at and centred in the image (0 x 0: off).
    """

    seed: int = -1
    strength: float = 0.0
    resize_from_width: int = 0
    resize_from_height: int = 0

    def __post_init__(self) -> None:
        _check_int("variation seed", self.seed, -1, MAX_SEED, " (-1 picks a random seed)")
        _check_float("variation strength", self.strength, 0.0, 1.0)
        for name, value in (("width", self.resize_from_width), ("height", self.resize_from_height)):
            if isinstance(value, bool) or not isinstance(value, int) or (
                    value != 0 and (value % 8 or not MIN_SIZE <= value <= MAX_SIZE)):
                raise RequestError(f"resize seed from {name} must be 0 (off) or a multiple of 8 between {MIN_SIZE} "
                                   f"and {MAX_SIZE}, got {value!r}")
        if (self.resize_from_width == 0) != (self.resize_from_height == 0):
            raise RequestError(f"resize seed from needs both a width and a height (or both 0 for off), got "
                               f"{self.resize_from_width}x{self.resize_from_height}")

    @property
    def resize_from(self) -> tuple[int, int] | None:
        return (self.resize_from_width, self.resize_from_height) if self.resize_from_width else None

    @property
    def active(self) -> bool:
        return self.strength > 0 or self.resize_from is not None


def check_variation(value: Any) -> None:
    if value is not None and not isinstance(value, VariationSeed):
        raise RequestError(f"variation must be a VariationSeed or None, got {value!r:.80}")


MIN_REFINER_SWITCH = 0.01


@dataclass(frozen=True, kw_only=True)
class RefinerSettings:
    """The SDXL refiner (AUTOMATIC1111's `refiner_checkpoint`, `refiner_switch_at`): the base model denoises the
    schedule up to `switch_at` (a fraction of the whole schedule) and the `checkpoint` finishes the same latents.
    switch_at 1.0 leaves nothing to the refiner: the job runs (and is written down) as the base alone."""

    checkpoint: str
    switch_at: float = 0.8

    def __post_init__(self) -> None:
        if not isinstance(self.checkpoint, str) or not self.checkpoint.strip():
            raise RequestError(f"refiner checkpoint must be a model name (or None for no refiner), "
                               f"got {self.checkpoint!r}")
        _check_float("refiner switch at", self.switch_at, MIN_REFINER_SWITCH, 1.0)

    @property
    def active(self) -> bool:
        return self.switch_at < 1.0


def check_refiner(value: Any) -> None:
    if value is not None and not isinstance(value, RefinerSettings):
        raise RequestError(f"refiner must be a RefinerSettings or None, got {value!r:.80}")


@dataclass(frozen=True, kw_only=True)
class Txt2ImgRequest(GenerationRequest):
    task: ClassVar[str] = "txt2img"

    hires: HiresFix | None = None  # a second, larger pass after each batch (None: off)
    variation: VariationSeed | None = None  # variation seed / strength / resize seed from (None: off)
    refiner: RefinerSettings | None = None  # an SDXL refiner finishing each image (None: off)

    def validate(self) -> None:
        super().validate()
        check_variation(self.variation)
        check_refiner(self.refiner)
        if self.hires is None:
            return
        if not isinstance(self.hires, HiresFix):
            raise RequestError(f"hires must be a HiresFix or None, got {type(self.hires).__name__}")
        if self.width is not None and self.height is not None:  # otherwise the worker checks at the model's size
            self.hires.sizes(self.width, self.height)


@dataclass(frozen=True, kw_only=True)
class Img2ImgRequest(GenerationRequest):
    """SDEdit: the init image is encoded, noised to the timestep `strength` selects, and denoised from there."""

    task: ClassVar[str] = "img2img"

    init_image: Image.Image
    strength: float = 0.75
    resize_mode: str = "just resize"
    # the noise added to the init image: mixed with a variation seed's, or made at another size (None: off)
    variation: VariationSeed | None = None
    refiner: RefinerSettings | None = None  # an SDXL refiner finishing each image (None: off; not in inpaint)

    def __post_init__(self) -> None:
        # width/height left out: the init image's own size, fitted to 64..2048 in multiples of 8
        check_loaded_image("init image", self.init_image)
        from ldm_ui.image_ops import size_for_image

        width, height = size_for_image(self.init_image)
        object.__setattr__(self, "width", self.width or width)
        object.__setattr__(self, "height", self.height or height)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check_loaded_image("init image", self.init_image)
        _check_float("denoising strength", self.strength, 0.0, 1.0)
        check_variation(self.variation)
        check_refiner(self.refiner)
        if self.resize_mode not in RESIZE_MODES:
            raise RequestError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {self.resize_mode!r}")


def check_loaded_image(name: str, value: Any) -> None:
    """check_image, then decode the pixels: a truncated or corrupt upload fails here with its name, not mid-job."""
    check_image(name, value)
    try:
        value.load()
    except (OSError, SyntaxError, ValueError) as error:
        raise RequestError(f"{name} could not be decoded ({error}); upload a complete PNG, JPEG or WebP file") from None


MASKED_CONTENTS = ("original", "fill", "latent noise", "latent nothing")
INPAINT_AREAS = ("whole picture", "only masked")
MAX_MASK_BLUR_PX = 64
MAX_MASK_PADDING_PX = 256


@dataclass(frozen=True, kw_only=True)
class InpaintRequest(Img2ImgRequest):
    """img2img inside a mask (white = repaint); pixels outside the blurred mask come back from the input unchanged.

    masked_content: what the masked area starts from (the original pixels, a fill from the colors around it, latent
    noise, or zero latents). inpaint_area "only masked" crops around the mask plus `only_masked_padding_px`, works on
    that crop at width x height, and pastes it back. The output has the input image's size.
    """

    task: ClassVar[str] = "inpaint"

    mask: Image.Image
    mask_blur_px: int = 4
    invert_mask: bool = False
    masked_content: str = "original"
    inpaint_area: str = "whole picture"
    only_masked_padding_px: int = 32

    def validate(self) -> None:
        super().validate()
        if self.refiner is not None:
            raise RequestError("the SDXL refiner works in txt2img and img2img; inpainting runs without one "
                               "(set Refiner to None)")
        check_loaded_image("mask", self.mask)
        _check_int("mask blur", self.mask_blur_px, 0, MAX_MASK_BLUR_PX, " px")
        _check_int("only-masked padding", self.only_masked_padding_px, 0, MAX_MASK_PADDING_PX, " px")
        if not isinstance(self.invert_mask, bool):
            raise RequestError(f"invert mask must be true or false, got {self.invert_mask!r}")
        if self.masked_content not in MASKED_CONTENTS:
            raise RequestError(f"masked content must be one of {', '.join(MASKED_CONTENTS)}, "
                               f"got {self.masked_content!r}")
        if self.inpaint_area not in INPAINT_AREAS:
            raise RequestError(f"inpaint area must be one of {', '.join(INPAINT_AREAS)}, got {self.inpaint_area!r}")
        mask, _ = self.binary_mask()
        if mask.getbbox() is None:
            raise RequestError(
                "the mask is empty after inverting it: it covered the whole image, so nothing is left to repaint"
                if self.invert_mask else
                "the mask is empty: paint over the part of the image to repaint (in an uploaded mask, white marks it)"
            )

    def binary_mask(self) -> tuple[Image.Image, str]:
        """The mask as 0/255 at the init image's size, inverted if asked, and a note if it had to be resized.

        A mask of another size but the same shape is resized to the image; one of another shape is refused,
        because stretching it would repaint the wrong place.
        """
        from PIL import ImageOps

        from ldm_ui.image_ops import mask_to_binary

        mask, note = mask_to_binary(self.mask), ""
        (iw, ih), (mw, mh) = self.init_image.size, mask.size
        if (mw, mh) != (iw, ih):
            if abs(mw / mh - iw / ih) > 0.01 * iw / ih:
                raise RequestError(f"the mask is {mw}x{mh} but the image is {iw}x{ih}: their shapes differ, so the "
                                   f"mask cannot be placed; use a mask of the image's size")
            mask = mask.resize((iw, ih), Image.Resampling.NEAREST)
            note = f"The {mw}x{mh} mask was resized to the image's {iw}x{ih}."
        return (ImageOps.invert(mask) if self.invert_mask else mask), note


@dataclass(frozen=True, kw_only=True)
class LoadModelRequest:
    """Switch the loaded model on the worker, between jobs, so no running job loses its weights."""

    task: ClassVar[str] = "load-model"

    model: str

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model.strip():
            raise RequestError(f"model must be a model name, got {self.model!r}")


@dataclass(frozen=True, kw_only=True)
class SetVaeRequest:
    """Decode with another VAE (Automatic, None, or a name from models/VAE), on the worker between jobs; the
    checkpoint stays loaded. The choice stays when the model changes."""

    task: ClassVar[str] = "set-vae"

    vae: str
    model: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.vae, str) or not self.vae.strip():
            raise RequestError(f"VAE must be Automatic, None or a VAE name, got {self.vae!r}")
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise RequestError(f"model must be a model name, got {self.model!r}")


Request = GenerationRequest | LoadModelRequest


# ---- events a job emits, in order: Queued*, Started, (Progress | Preview | Output)*, then one terminal event


@dataclass(frozen=True)
class Queued:
    position: int  # jobs ahead of this one; 0 means next


@dataclass(frozen=True)
class Started:
    message: str = ""


@dataclass(frozen=True)
class Progress:
    step: int  # steps done in the current batch
    steps: int
    batch_index: int
    batch_count: int
    it_per_s: float
    eta_s: float
    message: str = ""
    unit: str = "batch"  # what batch_index counts, as the status line names it ("batch", "frame")
    phase: str = ""  # which pass of a job with several ("hires"), shown before the step count

    @property
    def fraction(self) -> float:
        return (self.batch_index * self.steps + self.step) / max(1, self.steps * self.batch_count)


@dataclass(frozen=True)
class Preview:
    image: Image.Image
    step: int


@dataclass(frozen=True)
class Output:
    image: Image.Image
    seed: int
    infotext: str
    path: str | None


@dataclass(frozen=True)
class Finished:
    outputs: list[Output]
    summary: str = ""  # one line for the status, beyond the image count (e.g. "5 of 10 steps run")
    result: TaskResult | None = None  # what the task made beside its images (typed, see ldm_ui/results.py)

    @property
    def images(self) -> list[Image.Image]:
        return [o.image for o in self.outputs]


@dataclass(frozen=True)
class Failed:
    message: str


@dataclass(frozen=True)
class Cancelled:
    message: str = "interrupted"


TERMINAL_EVENTS = (Finished, Failed, Cancelled)


# ---- latent interpolation and the latent inspector

INTERPOLATION_MODES = ("prompts", "seeds", "both", "images")
EASINGS = ("linear", "ease-in-out")
LATENT_MIXES = ("slerp", "lerp")
MIN_FRAMES, MAX_FRAMES = 2, 120
MAX_FPS = 60.0


@dataclass(frozen=True, kw_only=True)
class InterpolateRequest(GenerationRequest):
    """A walk from endpoint A to endpoint B in `frames` images (both endpoints included).

    prompts: one seed, text embeddings mixed linearly; seeds: one prompt, initial noise mixed by slerp;
    both: prompt and seed together; images: two VAE-encoded images mixed by `latent_mix`, each frame decoded
    directly, or re-noised by `strength` and denoised with the prompt (SDEdit) when strength > 0.
    """

    task: ClassVar[str] = "interpolate"

    mode: str = "prompts"
    prompt_b: str = ""
    seed_b: int = -1
    frames: int = 8
    easing: str = "linear"
    image_a: Image.Image | None = None
    image_b: Image.Image | None = None
    latent_mix: str = "slerp"
    strength: float = 0.0
    fps: float = 8.0
    ping_pong: bool = False

    def validate(self) -> None:
        super().validate()
        if self.mode not in INTERPOLATION_MODES:
            raise RequestError(f"interpolation mode must be one of {', '.join(INTERPOLATION_MODES)}, got {self.mode!r}")
        _check_int("frames", self.frames, MIN_FRAMES, MAX_FRAMES)
        if self.easing not in EASINGS:
            raise RequestError(f"easing must be one of {', '.join(EASINGS)}, got {self.easing!r}")
        if self.latent_mix not in LATENT_MIXES:
            raise RequestError(f"latent mix must be one of {', '.join(LATENT_MIXES)}, got {self.latent_mix!r}")
        _check_float("re-noise strength", self.strength, 0.0, 1.0)
        _check_float("frame rate", self.fps, 1.0, MAX_FPS)
        _check_int("seed B", self.seed_b, -1, MAX_SEED, " (-1 picks a random seed)")
        check_prompt("prompt B", self.prompt_b)
        if self.batch_count != 1 or self.batch_size != 1:
            raise RequestError(f"an interpolation makes one image per frame: batch count and batch size must be 1, "
                               f"got {self.batch_count} and {self.batch_size} (set the number of frames instead)")
        if not isinstance(self.ping_pong, bool):
            raise RequestError(f"ping-pong must be true or false, got {self.ping_pong!r}")
        if self.mode in ("prompts", "both") and self.prompt == self.prompt_b and (
                self.mode == "prompts" or self.seed == self.seed_b >= 0):
            raise RequestError("prompt A and prompt B are the same; type a different prompt B to interpolate between")
        if self.mode == "seeds" and self.seed == self.seed_b >= 0:
            raise RequestError(f"seed A and seed B are both {self.seed}; pick a different seed B (or -1 for random)")
        if self.mode == "images":
            for name, image in (("image A", self.image_a), ("image B", self.image_b)):
                if image is None:
                    raise RequestError(f"images mode needs two images: {name} is missing")
                check_image(name, image)


@dataclass(frozen=True, kw_only=True)
class InspectLatentsRequest:
    """Encode an image with the model's VAE and decode it back: latent channels, sizes and reconstruction PSNR."""

    task: ClassVar[str] = "inspect-latents"

    image: Image.Image
    model: str | None = None

    def __post_init__(self) -> None:
        check_image("image", self.image)
        if self.model is not None and (not isinstance(self.model, str) or not self.model.strip()):
            raise RequestError(f"model must be a model name, got {self.model!r}")


@dataclass(frozen=True, kw_only=True)
class ControlMapRequest:
    """Run one ControlNet preprocessor on an image: the map a ControlNet unit would see at width x height."""

    task: ClassVar[str] = "control-map"

    image: Image.Image
    preprocessor: str
    width: int
    height: int
    canny_low: int = 100
    canny_high: int = 200
    model: None = None  # needs no diffusion model

    def __post_init__(self) -> None:
        check_image("control image", self.image)
        check_size("width", self.width)
        check_size("height", self.height)
        if not isinstance(self.preprocessor, str) or not self.preprocessor:
            raise RequestError(f"preprocessor must be a preprocessor name, got {self.preprocessor!r}")
        _check_int("Canny low threshold", self.canny_low, 0, 255)
        _check_int("Canny high threshold", self.canny_high, 0, 255)


MAX_UPSCALE_FACTOR = 4.0
MAX_UPSCALED_SIDE = 4096
MAX_UPSCALE_IMAGES = 100


@dataclass(frozen=True, kw_only=True, eq=False)
class UpscaleRequest:
    """The Extras tab: upscale images (uploaded, or every image in a folder inside the outputs) by a factor or to
    a size, with one pixel upscaler or two blended (`upscaler_2_visibility` of the second, as AUTOMATIC1111 does).
    Upscaler names are checked on the worker, which knows the installed models."""

    task: ClassVar[str] = "extras"

    images: tuple[Image.Image, ...] = ()
    folder: str | None = None  # instead of images: a folder inside the outputs, e.g. "txt2img/2026-12-01"
    upscaler: str = "Lanczos"
    scale: float = 2.0
    resize_width: int = 0  # either set: resize to that size instead of by `scale` (see upscale_sizes)
    resize_height: int = 0
    upscaler_2: str = "None"
    upscaler_2_visibility: float = 0.0
    save_images: bool = True  # False: the images come back in the job's events only (the HTTP API's Extras)
    model: None = None  # needs no diffusion model

    def __post_init__(self) -> None:
        if not isinstance(self.images, tuple):
            raise RequestError(f"images must be a tuple of images, got {type(self.images).__name__}")
        if bool(self.images) == bool(self.folder):
            raise RequestError("give either images to upscale or a folder inside the outputs, not "
                               + ("both" if self.images else "neither"))
        if len(self.images) > MAX_UPSCALE_IMAGES:
            raise RequestError(f"at most {MAX_UPSCALE_IMAGES} images per job, got {len(self.images)}")
        for index, image in enumerate(self.images):
            check_loaded_image(f"image {index + 1}", image)
        if self.folder is not None and (not isinstance(self.folder, str) or not self.folder.strip()):
            raise RequestError(f"folder must be a folder name inside the outputs, got {self.folder!r}")
        for name in ("upscaler", "upscaler_2"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise RequestError(f"{name.replace('_', ' ')} must be an upscaler name, got {getattr(self, name)!r}")
        _check_float("upscale factor", self.scale, 1.0, MAX_UPSCALE_FACTOR)
        for name in ("resize_width", "resize_height"):
            _check_int(name.replace("_", " "), getattr(self, name), 0, MAX_UPSCALED_SIDE, " px (0 = by the factor)")
        _check_float("upscaler 2 visibility", self.upscaler_2_visibility, 0.0, 1.0)
        if not isinstance(self.save_images, bool):
            raise RequestError(f"save images must be true or false, got {self.save_images!r}")
        for image in self.images:
            self.sizes(*image.size)

    def sizes(self, width: int, height: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """(size to upscale to, size after the centre crop) for an image; raises RequestError past the limit."""
        upscaled, final = upscale_sizes(width, height, self.scale, self.resize_width, self.resize_height)
        if max(upscaled) > MAX_UPSCALED_SIDE:
            raise RequestError(f"upscaling {width}x{height} would make {upscaled[0]}x{upscaled[1]}; each side must "
                               f"be at most {MAX_UPSCALED_SIDE} px (lower the factor or the size)")
        return upscaled, final


OUTPAINT_FILLS = ("edge stretch", "blurred mirror", "latent noise")
MAX_OUTPAINT_PX = 512
MAX_OUTPAINT_OVERLAP_PX = 128


@dataclass(frozen=True, kw_only=True)
class OutpaintRequest(GenerationRequest):
    """Extend `init_image` by left/right/up/down pixels and inpaint the new area plus `overlap_px` of the original.

    The new area starts from `fill`: the border pixels stretched outwards, a blurred mirror of the image, or
    latent noise. Pixels of the original further than `overlap_px` from a new edge come back unchanged (the mask
    blur is kept inside the overlap). width/height None: work at the extended canvas' own size.
    """

    task: ClassVar[str] = "outpaint"

    init_image: Image.Image
    left: int = 0
    right: int = 0
    up: int = 0
    down: int = 0
    fill: str = "edge stretch"
    overlap_px: int = 16
    mask_blur_px: int = 4
    strength: float = 0.9

    def validate(self) -> None:
        super().validate()
        check_loaded_image("init image", self.init_image)
        for side in ("left", "right", "up", "down"):
            _check_int(f"outpaint {side}", getattr(self, side), 0, MAX_OUTPAINT_PX, " px")
        if not (self.left or self.right or self.up or self.down):
            raise RequestError("outpainting needs at least one side to extend: set left, right, up or down above 0")
        if self.fill not in OUTPAINT_FILLS:
            raise RequestError(f"outpaint fill must be one of {', '.join(OUTPAINT_FILLS)}, got {self.fill!r}")
        _check_int("overlap", self.overlap_px, 0, MAX_OUTPAINT_OVERLAP_PX, " px")
        _check_int("mask blur", self.mask_blur_px, 0, MAX_MASK_BLUR_PX, " px")
        _check_float("denoising strength", self.strength, 0.0, 1.0)
        width, height = self.canvas_size
        if width > MAX_SIZE or height > MAX_SIZE:
            raise RequestError(f"the extended image would be {width}x{height}; each side must be at most {MAX_SIZE} px")

    @property
    def canvas_size(self) -> tuple[int, int]:
        w, h = self.init_image.size
        return w + self.left + self.right, h + self.up + self.down
