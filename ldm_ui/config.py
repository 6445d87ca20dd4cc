"""AppConfig: every setting the app runs with, built once from the command line and passed down."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ldm_ui.save_options import SaveOptions

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_MODEL_NAME = "demo-shapes"
PREVIEW_METHODS = ("auto", "approx", "full", "off")


DTYPES = ("auto", "float16", "bfloat16", "float32")


@dataclass
class AppConfig:
    models_dir: Path = PROJECT_ROOT / "models"
    outputs_dir: Path = PROJECT_ROOT / "outputs"
    presets_dir: Path = PROJECT_ROOT / "presets"
    styles_file: Path = PROJECT_ROOT / "styles.csv"  # AUTOMATIC1111's format: name,prompt,negative_prompt
    extensions_dir: Path = PROJECT_ROOT / "extensions"
    cache_dir: Path = PROJECT_ROOT / ".cache"
    # extra folders of single-file checkpoints, e.g. an AUTOMATIC1111 models/Stable-diffusion folder
    ckpt_dirs: list[Path] = field(default_factory=list)
    lora_dirs: list[Path] = field(default_factory=list)
    embeddings_dirs: list[Path] = field(default_factory=list)  # textual inversions besides models/embeddings
    clip_skip: int = 1  # the layer counted from the end (AUTOMATIC1111's "Clip skip"); a request may override it
    upscaler_dirs: list[Path] = field(default_factory=list)  # learned upscalers beyond models/ESRGAN, SwinIR, ...
    vae_dirs: list[Path] = field(default_factory=list)  # extra folders of VAEs besides models/VAE
    default_model: str = DEMO_MODEL_NAME
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    medvram: bool = False  # model CPU offload
    lowvram: bool = False  # sequential CPU offload
    dtype: str = "auto"  # auto (fp16 on CUDA, fp32 elsewhere) | float16 | bfloat16 | float32
    no_half_vae: bool = False  # keep the VAE in fp32 (SD1.x/SDXL VAEs can overflow to NaN in fp16)
    compile_unet: bool = False  # torch.compile the U-Net (a warm-up on the first job of each size)
    cpu_threads: int = 0  # torch threads for CPU work; 0 = auto (engine.models.cpu_threads_for)
    allow_pickle: bool = False
    preview_method: str = "auto"
    preview_every_n_steps: int = 1
    # at most one preview per this many seconds of sampling: the browser shows 5 updates a second, so a preview
    # per 6 ms step on a GPU (or the demo model) would be work nobody sees; 0 = every eligible step
    preview_interval_s: float = 0.1
    # how images are written: format, quality, filename pattern, .txt beside (the Settings tab, ldm_ui/user_settings.py)
    save_options: SaveOptions = field(default_factory=SaveOptions)
    # interface
    listen: bool = False
    port: int = 7860
    share: bool = False
    share_without_auth: bool = False
    auth: list[tuple[str, str]] = field(default_factory=list)
    auth_file: Path | None = None  # kept so the file itself is blocked from Gradio's file routes
    preset: str | None = None
    disable_extensions: bool = False
    max_file_size_mb: int = 20
    # the AUTOMATIC1111-compatible HTTP API under /sdapi/v1 (ldm_ui/api); off unless --api
    api: bool = False
    api_auth: list[tuple[str, str]] = field(default_factory=list)  # HTTP Basic logins; empty: the --auth ones
    # who may change app-wide state (extension toggles and settings); empty = the first login (access.is_admin)
    admins: list[str] = field(default_factory=list)
    cors_allow_origins: list[str] = field(default_factory=list)  # origins besides the app's own (ldm_ui/guard.py)
    allowed_hosts: list[str] = field(default_factory=list)  # Host names besides localhost when serving on 127.0.0.1
    upload_quota_mb: int = 500  # upload bytes per user per day
    # where jobs run: "local" (this process) or "ray" (engine replicas on Ray Serve, docs/scale-out.md)
    backend: str = "local"
    replicas: int = 1
    replicas_cpu: bool = False  # ray: replicas take one CPU each instead of one GPU
    ray_address: str | None = None  # ray: None starts a local Ray; "auto" or "host:6379" joins a cluster

    @property
    def host(self) -> str:
        return "0.0.0.0" if self.listen else "127.0.0.1"

    def checkpoint_dirs(self) -> list[Path]:
        return [self.models_dir / "Stable-diffusion", *self.ckpt_dirs]

    def diffusers_dir(self) -> Path:
        return self.models_dir / "diffusers"

    def embedding_dirs(self) -> list[Path]:
        return [self.models_dir / "embeddings", *self.embeddings_dirs]


class ConfigError(ValueError):
    """A flag or config value the app cannot start with; the message says what is allowed."""


def parse_auth_pair(text: str, source: str) -> tuple[str, str]:
    user, sep, password = text.strip().partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{source}: expected 'user:password', got {text.strip()!r}")
    return user, password


def read_auth_file(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise ConfigError(f"--auth-file {path} does not exist")
    if os.name != "nt" and path.stat().st_mode & 0o077:  # Windows reports 0o666 for every file
        raise ConfigError(
            f"--auth-file {path} is readable by other users (mode {path.stat().st_mode & 0o777:o}); "
            f"run 'chmod 600 {path}'"
        )
    pairs = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            pairs.append(parse_auth_pair(line, f"{path} line {number}"))
    if not pairs:
        raise ConfigError(f"--auth-file {path} has no 'user:password' lines")
    return pairs


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="app.py", description="ldm-ui: a browser UI for latent diffusion models.")
    p.add_argument("--model", default=DEMO_MODEL_NAME, help="model to load first (default: the built-in demo-shapes)")
    p.add_argument("--models-dir", type=Path, default=AppConfig.models_dir, help="root of the models folder")
    p.add_argument("--outputs-dir", type=Path, default=AppConfig.outputs_dir, help="where images are saved")
    p.add_argument("--ckpt-dir", type=Path, action="append", default=[],
                   help="extra folder of .safetensors checkpoints (repeatable; an AUTOMATIC1111 models folder works)")
    p.add_argument("--upscaler-dir", type=Path, action="append", default=[],
                   help="extra folder of learned upscalers, .safetensors or .pth (repeatable)")
    p.add_argument("--lora-dir", type=Path, action="append", default=[], help="extra folder of LoRA files (repeatable)")
    p.add_argument("--embeddings-dir", type=Path, action="append", default=[],
                   help="extra folder of textual-inversion embeddings (repeatable; models/embeddings is always read)")
    p.add_argument("--clip-skip", type=int, default=1,
                   help="text-encoder layer counted from the end, 1 to 12 (AUTOMATIC1111's Clip skip; default 1)")
    p.add_argument("--vae-dir", type=Path, action="append", default=[],
                   help="extra folder of VAE files (.safetensors) or diffusers VAE folders (repeatable)")
    p.add_argument("--styles-file", type=Path, default=AppConfig.styles_file,
                   help="prompt styles in AUTOMATIC1111's styles.csv format (an A1111 styles.csv works)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--medvram", action="store_true", help="offload whole models to the CPU between uses")
    p.add_argument("--lowvram", action="store_true", help="offload layer by layer (slowest, least VRAM)")
    p.add_argument("--dtype", default="auto",
                   help=f"weights' precision: {', '.join(DTYPES)} (auto: float16 on CUDA, float32 elsewhere)")
    p.add_argument("--no-half-vae", action="store_true", help="keep the VAE in float32 (no fp16 NaN retries)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the U-Net: faster steps after a warm-up on the first image of each size")
    p.add_argument("--cpu-threads", type=int, default=0,
                   help="torch threads when running on the CPU (default 0: one for tiny models like the demo, "
                        "else torch's default)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="allow loading .ckpt/.pt/.bin checkpoints (loaded with torch.load(weights_only=True))")
    p.add_argument("--preview", choices=PREVIEW_METHODS, default="auto",
                   help="live preview method (auto: a full decode where it is cheap, else approx)")
    p.add_argument("--preview-every", type=int, default=1, help="decode a preview every N steps")
    p.add_argument("--preview-interval", type=float, default=0.1, metavar="SECONDS",
                   help="and at most one preview per SECONDS of sampling (default 0.1; 0: every N steps exactly)")
    p.add_argument("--listen", action="store_true", help="serve on 0.0.0.0 instead of 127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="create a public Gradio link (requires --auth or --auth-file)")
    p.add_argument("--share-without-auth", action="store_true",
                   help="allow --share with no credentials: anyone with the link can use your GPU")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="login (repeatable); the password is visible to every user of this computer in the "
                        "process list (ps), so prefer --auth-file")
    p.add_argument("--auth-file", type=Path, help="file with one user:password per line (chmod 600)")
    p.add_argument("--admin", action="append", default=[], metavar="USER",
                   help="a login that may change app-wide settings and extensions (repeatable; default: the first "
                        "login; everyone when there is no login)")
    p.add_argument("--cors-allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="another web origin (e.g. https://my.site) whose pages may call this app (repeatable)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a Host name besides localhost to accept while serving on 127.0.0.1, e.g. the name a "
                        "reverse proxy on this machine forwards (repeatable)")
    p.add_argument("--upload-quota-mb", type=int, default=500, help="upload limit per user per day, in MB")
    p.add_argument("--preset", help="preset name from presets/ to start with")
    p.add_argument("--disable-extensions", action="store_true", help="load no extensions")
    p.add_argument("--max-file-size-mb", type=int, default=20, help="upload size limit in MB")
    p.add_argument("--api", action="store_true",
                   help="serve the AUTOMATIC1111-compatible HTTP API under /sdapi/v1 (off by default)")
    p.add_argument("--api-auth", action="append", default=[], metavar="USER:PASS",
                   help="HTTP Basic login for /sdapi/v1 (repeatable; default: the --auth logins)")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: run jobs in this process (default); ray: engine replicas on Ray Serve "
                        "(see docs/scale-out.md)")
    p.add_argument("--replicas", type=int, default=None,
                   help="ray backend: engine replicas, each owning one GPU (default 1)")
    p.add_argument("--replicas-cpu", action="store_true",
                   help="ray backend: replicas use one CPU each instead of a GPU (testing, CPU-only hosts)")
    p.add_argument("--ray-address", default=None,
                   help="ray backend: join a running Ray cluster ('auto' or the head's 'host:6379'; not ray://) "
                        "instead of starting a local one")
    return p


def config_from_args(argv: list[str] | None = None) -> AppConfig:
    args = build_arg_parser().parse_args(argv)
    auth = [parse_auth_pair(a, "--auth") for a in args.auth]
    if args.auth_file:
        auth += read_auth_file(args.auth_file)
    if args.share and not auth and not args.share_without_auth:
        raise ConfigError(
            "--share makes a public link: anyone who finds it could use your GPU. "
            "Add credentials with --auth user:password or --auth-file FILE "
            "(or pass --share-without-auth if you really mean it)."
        )
    if args.dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {args.dtype!r}")
    api_auth = [parse_auth_pair(a, "--api-auth") for a in args.api_auth]
    if args.api_auth and not args.api:
        raise ConfigError("--api-auth sets the logins of the HTTP API, which is off: add --api")
    if args.api and (args.share or args.listen) and not (auth or api_auth):
        raise ConfigError(
            f"--api with {'--share' if args.share else '--listen'} would let anyone who reaches this machine "
            "generate through /sdapi/v1 without a login. Add credentials with --api-auth user:password or "
            "--auth user:password (or --auth-file FILE)."
        )
    if args.preview_every < 1:
        raise ConfigError(f"--preview-every must be 1 or more, got {args.preview_every}")
    if not 0 <= args.preview_interval <= 60:
        raise ConfigError(f"--preview-interval must be from 0 to 60 seconds, got {args.preview_interval}")
    if not 0 <= args.cpu_threads <= 1024:
        raise ConfigError(f"--cpu-threads must be between 0 (auto) and 1024, got {args.cpu_threads}")
    if not 1 <= args.clip_skip <= 12:
        raise ConfigError(f"--clip-skip must be between 1 and 12, got {args.clip_skip}")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if not 1 <= args.max_file_size_mb <= 10_000:
        raise ConfigError(f"--max-file-size-mb must be between 1 and 10000 (MB), got {args.max_file_size_mb}")
    if not 1 <= args.upload_quota_mb <= 1_000_000:
        raise ConfigError(f"--upload-quota-mb must be between 1 and 1000000 (MB), got {args.upload_quota_mb}")
    users = [user for user, _ in auth]
    for admin in args.admin:
        if admin not in users:
            raise ConfigError(f"--admin {admin!r} is not one of the logins ({', '.join(users) or 'none given'})")
    for origin in args.cors_allow_origin:
        check_origin(origin)
    check_outputs_dir(args.outputs_dir)
    check_backend(args)
    return AppConfig(
        models_dir=args.models_dir, outputs_dir=args.outputs_dir, ckpt_dirs=args.ckpt_dir, lora_dirs=args.lora_dir,
        embeddings_dirs=args.embeddings_dir, clip_skip=args.clip_skip, upscaler_dirs=args.upscaler_dir,
        vae_dirs=args.vae_dir, styles_file=args.styles_file,
        default_model=args.model, device=args.device, medvram=args.medvram, lowvram=args.lowvram,
        dtype=args.dtype, no_half_vae=args.no_half_vae, compile_unet=args.compile,
        cpu_threads=args.cpu_threads,
        allow_pickle=args.allow_pickle, preview_method=args.preview, preview_every_n_steps=args.preview_every,
        preview_interval_s=args.preview_interval,
        listen=args.listen, port=args.port, share=args.share, share_without_auth=args.share_without_auth,
        auth=auth, auth_file=args.auth_file, preset=args.preset, disable_extensions=args.disable_extensions,
        max_file_size_mb=args.max_file_size_mb, api=args.api, api_auth=api_auth, admins=args.admin,
        cors_allow_origins=[o.rstrip("/").lower() for o in args.cors_allow_origin],
        allowed_hosts=[h.lower() for h in args.allowed_host], upload_quota_mb=args.upload_quota_mb,
        backend=args.backend, replicas=args.replicas if args.replicas is not None else 1,
        replicas_cpu=args.replicas_cpu, ray_address=args.ray_address,
    )


def check_origin(origin: str) -> str:
    """An origin is scheme://host[:port], nothing after it (what browsers send in the Origin header)."""
    if not re.fullmatch(r"https?://[A-Za-z0-9.\-\[\]:]+/?", origin):
        raise ConfigError(f"--cors-allow-origin must look like https://example.com or http://host:port, got {origin!r}")
    return origin


def check_outputs_dir(path: Path) -> Path:
    """Refuse an outputs folder that is, or holds, the home folder, the project folder or the working directory:
    everything in it can be served to signed-in users (SECURITY.md)."""
    outputs = Path(os.path.realpath(os.path.expanduser(str(path))))
    for name, folder in (("your home folder", Path.home()), ("the project folder", PROJECT_ROOT),
                         ("the current directory", Path.cwd())):
        folder = Path(os.path.realpath(folder))
        if folder == outputs or folder.is_relative_to(outputs):
            raise ConfigError(f"--outputs-dir {path} is or contains {name}; its files could be served to "
                              f"signed-in users. Use a folder of its own (the default is outputs/ in the app's folder)")
    return path


def check_backend(args: argparse.Namespace) -> None:
    ray_only = [flag for flag, value in (("--replicas", args.replicas is not None), ("--replicas-cpu",
                args.replicas_cpu), ("--ray-address", args.ray_address is not None)) if value]
    if args.backend != "ray":
        if ray_only:
            raise ConfigError(f"{', '.join(ray_only)} only applies with --backend ray")
        return
    if args.replicas is not None and not 1 <= args.replicas <= 1024:
        raise ConfigError(f"--replicas must be between 1 and 1024, got {args.replicas}")
    if (args.ray_address or "").startswith("ray://"):
        # Serve refuses streaming handles through Ray Client, and every job streams its events back
        raise ConfigError(f"--ray-address {args.ray_address}: a Ray Client address (ray://) cannot stream Ray Serve "
                          "responses; run the app on a node of the cluster (after `ray start --address HEAD:6379`) "
                          "with --ray-address auto, or give the head's HOST:6379")
    import importlib.util

    try:
        found = importlib.util.find_spec("ray.serve") is not None
    except (ImportError, ValueError):  # no ray package at all, or a broken one
        found = False
    if not found:
        raise ConfigError("--backend ray needs Ray Serve, which is not installed: "
                          "pip install 'ray[serve]==2.60.0' (or pip install -r requirements.txt)")
