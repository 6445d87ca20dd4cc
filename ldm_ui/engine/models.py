"""Find, identify and load models: diffusers folders, single-file checkpoints, hub ids, the built-in demo."""

from __future__ import annotations

import gc
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from functools import cached_property
from typing import TYPE_CHECKING, Callable

from ldm_ui.config import AppConfig
from ldm_ui.engine.families import Family, family_named, family_of_pipeline, unknown_pipeline_message
from ldm_ui.engine.file_hashes import short_file_hash
from ldm_ui.engine.model_types import PICKLE_SUFFIXES, SINGLE_FILE_SUFFIXES, ModelError
from ldm_ui.engine.refiner_slot import RefinerSlot
from ldm_ui.engine.samplers import samplers_for
from ldm_ui.engine.single_file import CONFIGS_DIR, load_single_file
from ldm_ui.engine.vae_choice import reapply_after_load
from ldm_ui.safe_paths import check_name, is_inside, pickle_only_weights, shown_path

if TYPE_CHECKING:
    import torch

    from ldm_ui.engine.preview import LinearPreview, VaePreview
    from ldm_ui.engine.vae import VaeCodec
    from ldm_ui.prompts.conditioning import LastConditioning

log = logging.getLogger(__name__)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
# Below this many U-Net parameters every op is so small that fixed per-call costs dominate on the CPU: splitting
# an op across threads, and oneDNN's convolution setup (~270 us per call, against ~60 us for PyTorch's own
# kernel at the demo's sizes). On a 2-core box the demo model's 20-step image took 0.58 s with 2 threads and
# 0.43 s with 1; with oneDNN convolutions off as well, 0.23-0.28 s instead of 0.28-0.29 s.
TINY_UNET_PARAMS = 20_000_000


# the task pipelines a family may lack -> the registry's feature name
TASK_PIPELINE_FEATURES = {"AutoPipelineForImage2Image": "img2img", "AutoPipelineForInpainting": "inpaint"}

__all__ = ["ModelError", "ModelManager", "LoadedModel", "ModelEntry"]  # ModelError re-exported for callers


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what the user sees and types
    kind: str  # diffusers | single_file | hub
    location: str  # a path, or a hub id


def _last_conditioning() -> LastConditioning:
    from ldm_ui.prompts.conditioning import LastConditioning  # torch's side: a LoadedModel exists once torch is in

    return LastConditioning()


@dataclass
class LoadedModel:
    entry: ModelEntry
    pipe: object  # the txt2img pipeline; other tasks' pipelines share its components
    family: str  # sd1 | sd2 | sdxl | sd3 | flux | pixart | other
    native_size: int
    model_hash: str
    base_scheduler_config: dict
    vae: VaeCodec  # every encode and decode of this model goes through it (one NaN policy, one tiling rule)
    approx_preview: LinearPreview
    full_preview: VaePreview
    device: torch.device
    cpu_threads: int = 0  # torch threads the engine runs this model with on the CPU (0: not on the CPU)
    offloaded: bool = False  # --medvram/--lowvram on CUDA: weights live on the CPU between uses
    compiled_sizes: set = field(default_factory=set)  # (width, height, batch) the compiled U-Net has warmed up for
    pipelines: dict[str, object] = field(default_factory=dict)  # task pipelines built over the same weights
    controlnets: dict[str, object] = field(default_factory=dict)  # ControlNet models by location, kept while used
    vae_selection: object = None  # engine/vae_choice.py's VaeSelection: the VAE in use and the checkpoint's own
    # the last prompt conditioning built for this model, reused when the next batch asks for the same one
    last_conditioning: LastConditioning = field(default_factory=_last_conditioning)

    @property
    def denoiser(self):
        """The U-Net, or the transformer of a DiT family (SD3, Flux, PixArt)."""
        return denoiser_of(self.pipe)

    @property
    def sampler_names(self) -> tuple[str, ...]:
        """The samplers that fit this model (flow-matching models: Euler, Euler a, Heun), for the UI's list."""
        return samplers_for(self.base_scheduler_config)

    @property
    def is_inpainting_model(self) -> bool:
        unet = getattr(self.pipe, "unet", None)
        return unet is not None and unet.config.in_channels == 9

    @property
    def family_row(self) -> Family:
        """This model's row in the family registry: which tasks and controls apply, and why not."""
        return family_named(self.family)

    def pipeline(self, auto_class_name: str):
        """The pipeline for a task (e.g. 'AutoPipelineForImage2Image'), built over the loaded weights once; a task
        the family's diffusers pipelines lack is refused with the registry's reason."""
        feature = TASK_PIPELINE_FEATURES.get(auto_class_name)
        if feature:
            self.family_row.require(feature, self.entry.name)
        if auto_class_name not in self.pipelines:
            import diffusers

            self.pipelines[auto_class_name] = getattr(diffusers, auto_class_name).from_pipe(self.pipe)
        return self.pipelines[auto_class_name]


def denoiser_of(pipe):
    return pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer


def native_size_of(pipe) -> int:
    """Pixels per side the model was trained at; Flux's transformer config has no sample size, its pipeline has."""
    latent = getattr(denoiser_of(pipe).config, "sample_size", None) or getattr(pipe, "default_sample_size", 64)
    return int(latent) * int(pipe.vae_scale_factor)


def is_tiny(pipe) -> bool:
    return sum(p.numel() for p in denoiser_of(pipe).parameters()) < TINY_UNET_PARAMS


def cpu_threads_for(tiny: bool, configured: int, default: int) -> int:
    """Torch threads for a model on the CPU: the configured number, else 1 for a tiny model, else the default."""
    if configured > 0:
        return configured
    return 1 if tiny else default


class ModelManager:
    """Lists the models a user can pick and keeps exactly one of them loaded (and an SDXL refiner beside it, when
    jobs ask for one: `refiner`).

    Listing and resolving names need no torch; torch and the loading modules are imported when the first model
    loads (on the worker), so the app serves its page before paying for those imports (app.py)."""

    def __init__(self, config: AppConfig):
        self.config = config
        self.current: LoadedModel | None = None
        self._hash_cache_path = config.cache_dir / "model-hashes.json"
        self._lock = threading.Lock()
        self.single_file_configs = CONFIGS_DIR  # one diffusers config folder per family variant (tests use tiny ones)
        self.refiner = RefinerSlot(self)

    @cached_property
    def device(self) -> torch.device:
        from ldm_ui.engine.devices import dtype_for, pick_device, placement_warnings

        device = pick_device(self.config.device)
        for note in placement_warnings(self.config, device, dtype_for(device, self.config.dtype)):
            log.warning(note)
        return device

    @cached_property
    def dtype(self) -> torch.dtype:
        from ldm_ui.engine.devices import dtype_for

        return dtype_for(self.device, self.config.dtype)

    @cached_property
    def _default_threads(self) -> int:
        """What torch chose (or the embedding program set), read before the first model sets its own."""
        import torch

        return torch.get_num_threads()

    # ---- discovery

    def list_models(self) -> list[ModelEntry]:
        entries: dict[str, ModelEntry] = {}
        diffusers_dir = self.config.diffusers_dir()
        if diffusers_dir.is_dir():
            for folder in sorted(diffusers_dir.iterdir()):
                if (folder / "model_index.json").is_file() and is_inside(folder, diffusers_dir):
                    entries.setdefault(folder.name, ModelEntry(folder.name, "diffusers", str(folder)))
        suffixes = SINGLE_FILE_SUFFIXES + (PICKLE_SUFFIXES if self.config.allow_pickle else ())
        for root in self.config.checkpoint_dirs():
            if not root.is_dir():
                continue
            for path in sorted(root.rglob("*")):
                if path.suffix.lower() in suffixes and path.is_file() and is_inside(path, root):
                    name = path.relative_to(root).as_posix()
                    entries.setdefault(name, ModelEntry(name, "single_file", str(path)))
        if self.current and self.current.entry.name not in entries:
            entries[self.current.entry.name] = self.current.entry
        return list(entries.values())

    def model_names(self) -> list[str]:
        return [e.name for e in self.list_models()]

    def resolve(self, name: str | None) -> ModelEntry:
        name = check_name((name or self.config.default_model).strip(), "model")
        for entry in self.list_models():
            if entry.name == name:
                return entry
        if HUB_ID.match(name) and not os.path.exists(name):  # an existing relative path is not a hub id
            return ModelEntry(name, "hub", name)
        if Path(name).suffix.lower() in PICKLE_SUFFIXES and not self.config.allow_pickle:
            raise ModelError(
                f"model {name!r} is a pickle checkpoint, which can run code when loaded; convert it to "
                ".safetensors, or start the app with --allow-pickle to load it with torch.load(weights_only=True)"
            )
        known = ", ".join(self.model_names()) or "none found"
        raise ModelError(
            f"unknown model {name!r}: pick one of the models in {shown_path(self.config.models_dir)} ({known}) "
            "or type a hub id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5'"
        )

    # ---- loading

    def get(self, name: str | None, report: Callable[[str], None] = lambda message: None) -> LoadedModel:
        if self._is_current(name):
            return self.current  # every job asks: no scan of the model folders when it is the loaded one
        entry = self.resolve(name)
        with self._lock:
            if self.current and self.current.entry == entry:
                return self.current
            vae_choice = self.current.vae_selection.choice if self.current and self.current.vae_selection else None
            self.unload()
            held = self.refiner.current
            if held is not None and held.entry == entry:  # the refiner held beside it becomes the model: one copy
                self.current = held
                reapply_after_load(self.current, vae_choice, self.config)
                return self.current
            report(f"loading {entry.name}")
            started = time.perf_counter()
            pipe, family = self._load_pipeline(entry, report)
            self.current = self._prepare(entry, pipe, family)
            reapply_after_load(self.current, vae_choice, self.config)  # the VAE picked stays picked
            log.info("loaded %s (%s) in %.1f s", entry.name, self.current.family, time.perf_counter() - started)
            return self.current

    def _is_current(self, name: str | None) -> bool:
        """Whether `name` is the loaded model (holding no reference to it: a switch frees it before loading)."""
        wanted = check_name((name or self.config.default_model).strip(), "model")
        return self.current is not None and self.current.entry.name == wanted

    def unload(self) -> None:
        if self.current is None:
            return
        if self.refiner.current is not self.current:  # a base that is also the refiner stays whole for it
            self.current.pipelines.clear()
            self.current.controlnets.clear()
        self.current = None
        self.free_memory()

    @staticmethod
    def free_memory() -> None:
        from ldm_ui.engine.devices import empty_device_caches

        gc.collect()
        empty_device_caches()

    def _load_pipeline(self, entry: ModelEntry, report: Callable[[str], None]) -> tuple[object, str | None]:
        """The pipeline, and its family when the loader knows it (a single file's recognized variant)."""
        from diffusers import DiffusionPipeline

        # pickle weights (.bin) only with --allow-pickle: diffusers then refuses a folder without .safetensors
        common = {"torch_dtype": self.dtype, "use_safetensors": None if self.config.allow_pickle else True}
        if entry.kind == "diffusers":
            refuse_pickle_folder(entry.name, Path(entry.location), self.config.allow_pickle, "model")
            pipe = DiffusionPipeline.from_pretrained(entry.location, local_files_only=True, **common)
        elif entry.kind == "single_file":
            pipe, variant = load_single_file(Path(entry.location), self.config, self.dtype, self.single_file_configs)
            return pipe, variant.family
        else:
            pipe = self._load_from_hub(entry.location, report, common)
        return pipe, None

    def _load_from_hub(self, repo_id: str, report: Callable[[str], None], common: dict):
        from diffusers import DiffusionPipeline

        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        try:  # already downloaded: no network needed
            return DiffusionPipeline.from_pretrained(repo_id, local_files_only=True, **common)
        except Exception as error:  # noqa: BLE001 - any failure here just means "not in the local cache"
            if offline:
                raise ModelError(
                    f"model {repo_id!r} is not downloaded and the app is offline (HF_HUB_OFFLINE=1): download it on "
                    f"a machine with network access, or put a diffusers folder in {shown_path(self.config.diffusers_dir())}"
                ) from error
        watcher = _DownloadWatcher(repo_id, report)
        try:
            with watcher:
                return DiffusionPipeline.from_pretrained(repo_id, **common)
        except Exception as error:  # noqa: BLE001 - hub failures come in many types; all mean the same to a user
            raise ModelError(f"could not download model {repo_id!r} from the hub: {error}") from error

    def _prepare(self, entry: ModelEntry, pipe, family: str | None) -> LoadedModel:
        import torch

        from ldm_ui.engine.devices import compile_denoiser
        from ldm_ui.engine.preview import VaePreview, linear_preview_for
        from ldm_ui.engine.vae import VaeCodec

        family = family or family_of_pipeline(pipe)
        if family == "other" and getattr(pipe, "unet", None) is None:  # a DiT the registry does not describe
            raise ModelError(unknown_pipeline_message(entry.name, type(pipe).__name__))
        pipe.set_progress_bar_config(disable=True)
        if self.config.no_half_vae:
            pipe.vae.to(torch.float32)  # the codec casts latents to the VAE's dtype; pipelines never decode
        if self.device.type == "cuda" and self.config.lowvram:
            pipe.enable_sequential_cpu_offload(device=self.device)  # --device cuda:N is honoured under offload
        elif self.device.type == "cuda" and self.config.medvram:
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        if self.config.compile_unet:
            compile_denoiser(denoiser_of(pipe), self.device)
        cpu_threads = 0
        if self.device.type == "cpu":  # models load on the worker thread, which then runs every job
            tiny = is_tiny(pipe)
            cpu_threads = cpu_threads_for(tiny, self.config.cpu_threads, self._default_threads)
            torch.set_num_threads(cpu_threads)
            torch.backends.mkldnn.enabled = not tiny  # process-wide, like the model itself
        codec = VaeCodec(pipe)
        return LoadedModel(
            entry=entry, pipe=pipe, family=family,
            native_size=native_size_of(pipe),
            model_hash=self.model_hash(entry, pipe),
            base_scheduler_config=dict(pipe.scheduler.config),
            vae=codec,
            approx_preview=linear_preview_for(family, codec),
            full_preview=VaePreview(codec),
            device=self.device, cpu_threads=cpu_threads,
            offloaded=self.device.type == "cuda" and (self.config.lowvram or self.config.medvram),
        )

    # ---- hashes (AUTOMATIC1111's: first 10 hex digits of the file's sha256), cached by path, size and mtime

    def model_hash(self, entry: ModelEntry, pipe) -> str:
        path = Path(entry.location)
        if entry.kind != "single_file":
            path = _main_weights_file(pipe)
        if path is None or not path.is_file():
            return ""
        return self.file_hash(path)

    def file_hash(self, path: Path) -> str:
        return short_file_hash(path, self._hash_cache_path)


def refuse_pickle_folder(name: str, folder: Path, allow_pickle: bool, kind: str) -> None:
    parts = [] if allow_pickle else pickle_only_weights(folder)
    if parts:
        raise ModelError(f"{kind} {name!r} has only pickle weights (.bin/.pt) in {', '.join(parts)}; pickle files "
                         "can run code when loaded. Convert them to .safetensors, or start with --allow-pickle")


def _main_weights_file(pipe) -> Path | None:
    folder = getattr(denoiser_of(pipe).config, "_name_or_path", None) or pipe.config.get("_name_or_path")
    if not folder:
        return None
    for candidate in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                      "diffusion_pytorch_model.bin"):
        path = Path(folder) / candidate
        if path.is_file():
            return path
    return None


class _DownloadWatcher:
    """Reports how much of a hub download has arrived by watching its cache folder grow."""

    def __init__(self, repo_id: str, report: Callable[[str], None], every_s: float = 1.0):
        from huggingface_hub.constants import HF_HUB_CACHE

        self.folder = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
        self.repo_id, self.report, self.every_s = repo_id, report, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="download-watcher")

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            size = sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file()) if self.folder.is_dir() else 0
            self.report(f"downloading {self.repo_id}: {size / 1e6:,.0f} MB so far")

