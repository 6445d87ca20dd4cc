"""Typed results a finished job carries beside its images (`Finished.result`), one dataclass per kind of task.

Nothing here imports torch or Gradio: the UI, the HTTP API and the tests read the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image


@dataclass(frozen=True)
class SamplingStats:
    """What a batch loop (txt2img, img2img, inpaint) did, for summaries, benchmarks and tests."""

    first_seed: int
    width: int
    height: int
    steps_run: int  # steps the pipeline that ran actually took (img2img runs steps x strength)
    sampling_s: float  # wall time inside the pipeline calls, previews included
    preview_s: float  # of which decoding previews
    previews: int
    crop_box: tuple[int, int, int, int] | None = None  # inpaint: where the worked-on canvas lands on the input


@dataclass(frozen=True)
class UnsavedFile:
    """A file an engine replica on Ray made and did not write: its bytes, and its place relative to the outputs
    folder. The front process writes it there (ldm_ui/backends/outputs.py) and puts the saved Path in its stead,
    so the UI and the API only ever see Paths."""

    place: str  # "interpolate/2026-12-01/<planned run folder>/interpolation.gif"
    data: bytes


@dataclass(frozen=True)
class InterpolationResult:
    folder: Path  # the run's own numbered folder: frames, GIF and MP4
    gif: Path | UnsavedFile  # an UnsavedFile only between a Ray replica and its front
    mp4: Path | UnsavedFile
    width: int
    height: int
    animation_frames: int  # frames in the GIF/MP4 (ping-pong plays the inner frames twice)
    positions: tuple[float, ...]  # each frame's mixing weight, 0 for A .. 1 for B


@dataclass(frozen=True)
class ModelLoaded:
    model: str
    native_size: int


@dataclass(frozen=True)
class ChannelStats:
    minimum: float
    maximum: float
    mean: float
    std: float


@dataclass(frozen=True)
class LatentInspection:
    original: Image.Image  # the image as encoded (cropped to whole latent cells)
    reconstruction: Image.Image  # decode(encode(original))
    channels: list[Image.Image]  # one grayscale image per latent channel, min..max stretched to black..white
    channel_stats: list[ChannelStats]
    latent_size: tuple[int, int]  # (width, height) of the latent
    latent_channels: int
    downscale: int  # pixels per latent cell along each side
    input_size: tuple[int, int]  # the uploaded image's (width, height), before cropping
    psnr_db: float
    model: str = ""

    @property
    def size(self) -> tuple[int, int]:
        return self.original.size

    @property
    def pixel_values(self) -> int:
        return self.size[0] * self.size[1] * 3

    @property
    def latent_values(self) -> int:
        return self.latent_size[0] * self.latent_size[1] * self.latent_channels

    @property
    def compression(self) -> float:
        return self.pixel_values / self.latent_values


@dataclass(frozen=True)
class ControlMap:
    """A ControlNet preprocessor's output: the map the ControlNet would see."""

    image: Image.Image
    preprocessor: str


@dataclass(frozen=True)
class VaeChanged:
    choice: str  # what was picked: Automatic, None or a VAE name
    vae: str | None  # the VAE file in use; None for the checkpoint's own
    vae_hash: str


TaskResult = SamplingStats | InterpolationResult | ModelLoaded | LatentInspection | ControlMap | VaeChanged
