"""What the GET listings of /sdapi/v1 return, in AUTOMATIC1111's shapes, from what ldm-ui really has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ldm_ui.engine.samplers import SAMPLER_NAMES
from ldm_ui.metadata import parse_infotext
from ldm_ui.safe_paths import shown_path

from ldm_ui.api.translate import SAMPLER_ALIASES, SCHEDULERS

# cmd-flags never shows these: logins and the login file's path
SECRET_FLAGS = ("auth", "api_auth", "auth_file")


def sd_models(engine) -> list[dict[str, Any]]:
    current = engine.models.current
    items = []
    for entry in engine.models.list_models():
        short_hash = current.model_hash if current and current.entry == entry and current.model_hash else None
        items.append({"title": entry.name, "model_name": entry.name.rsplit(".", 1)[0] if entry.kind == "single_file"
                      else entry.name, "hash": short_hash, "sha256": None, "filename": entry.location,
                      "config": None})
    return items


def samplers() -> list[dict[str, Any]]:
    return [{"name": name, "aliases": SAMPLER_ALIASES.get(name, []), "options": {}} for name in SAMPLER_NAMES]


def schedulers() -> list[dict[str, Any]]:
    return [{"name": name, "label": name.capitalize(), "aliases": None, "default_rho": None,
             "need_inner_model": False} for name in SCHEDULERS]


def loras(config) -> list[dict[str, Any]]:
    from ldm_ui.engine.lora import list_loras

    return [{"name": e.name, "alias": e.name, "path": str(e.path), "metadata": {}} for e in list_loras(config)]


def cmd_flags(config) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    for key, value in vars(config).items():
        if key in SECRET_FLAGS:
            continue
        if isinstance(value, list):
            value = [str(v) for v in value]
        elif value is not None and not isinstance(value, (bool, int, float, str)):
            value = str(value)
        flags[key] = value
    return flags


def memory() -> dict[str, Any]:
    import psutil
    import torch

    ram = psutil.virtual_memory()
    result: dict[str, Any] = {"ram": {"free": ram.available, "used": ram.total - ram.available, "total": ram.total}}
    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        stats = torch.cuda.memory_stats()
        result["cuda"] = {
            "system": {"free": free, "used": total - free, "total": total},
            "active": {"current": stats.get("active_bytes.all.current", 0), "peak": stats.get("active_bytes.all.peak", 0)},
            "allocated": {"current": stats.get("allocated_bytes.all.current", 0),
                          "peak": stats.get("allocated_bytes.all.peak", 0)},
            "reserved": {"current": stats.get("reserved_bytes.all.current", 0),
                         "peak": stats.get("reserved_bytes.all.peak", 0)},
            "inactive": {"current": stats.get("inactive_split_bytes.all.current", 0),
                         "peak": stats.get("inactive_split_bytes.all.peak", 0)},
            "events": {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)},
        }
    else:
        result["cuda"] = {"error": "unavailable"}
    return result


def sd_vae(config) -> list[dict[str, Any]]:
    """The VAE files the picker offers (Automatic and None are choices, not files, as in AUTOMATIC1111)."""
    from ldm_ui.engine.vae_choice import list_vae_files

    return [{"model_name": f.name, "filename": shown_path(f.path)} for f in list_vae_files(config)]


def prompt_styles(config) -> list[dict[str, str]]:
    from ldm_ui.styles import load_styles

    return [{"name": s.name, "prompt": s.prompt, "negative_prompt": s.negative_prompt}
            for s in load_styles(config.styles_file).styles.values()]


def current_vae(engine) -> str:
    """The loaded model's VAE choice (Automatic when none is loaded, or the model lives on Ray replicas)."""
    from ldm_ui.engine.vae_choice import VAE_AUTOMATIC

    selection = getattr(engine.models.current, "vae_selection", None)
    return selection.choice if selection is not None else VAE_AUTOMATIC


def options(engine, settings) -> dict[str, Any]:
    """The settings ldm-ui has, under AUTOMATIC1111's option names."""
    config, current = engine.config, engine.models.current
    return {
        "sd_model_checkpoint": current.entry.name if current else config.default_model,
        "sd_checkpoint_hash": current.model_hash if current else None,
        "sd_vae": current_vae(engine),
        "CLIP_stop_at_last_layers": settings.clip_skip or config.clip_skip,
        "live_previews_enable": config.preview_method != "off",
        "show_progress_every_n_steps": config.preview_every_n_steps,
        "live_preview_content": "Prompt",
        "show_progress_type": {"auto": "Auto", "approx": "Approx cheap", "full": "Full",
                               "off": "None"}[config.preview_method],
        "samples_save": True,
        "samples_format": config.save_options.format,
        "jpeg_quality": config.save_options.quality,
        "samples_filename_pattern": config.save_options.filename_pattern,
        "save_txt": config.save_options.save_txt,
        "outdir_samples": "",
        "outdir_txt2img_samples": str(config.outputs_dir / "txt2img"),
        "outdir_img2img_samples": str(config.outputs_dir / "img2img"),
    }


def png_info(text: str | None, other: dict[str, Any]) -> dict[str, Any]:
    """/png-info's answer: the infotext, the image's other text items, and the parsed settings."""
    if not text:
        return {"info": "", "items": other, "parameters": {}}
    parsed = parse_infotext(text)
    parameters: dict[str, Any] = {"Prompt": parsed.prompt, "Negative prompt": parsed.negative_prompt,
                                  **parsed.settings}
    size = parsed.size()
    if size:
        parameters["Size-1"], parameters["Size-2"] = str(size[0]), str(size[1])
    return {"info": text, "items": other, "parameters": parameters}


def upscalers(engine) -> list[dict[str, Any]]:
    """The pixel upscalers the hires fix and Extras offer (Lanczos, Nearest and the learned models found)."""
    library = getattr(engine, "upscalers", None)
    names = library.pixel_upscalers() if library is not None else []
    files = library.learned_files() if library is not None else {}
    return [{"name": name, "model_name": name if name in files else None,
             "model_path": shown_path(files[name].path) if name in files else None, "model_url": None,
             "scale": None} for name in names]


def latent_upscale_modes() -> list[dict[str, str]]:
    from ldm_ui.engine.upscalers import LATENT_UPSCALE_MODES

    return [{"name": name} for name in LATENT_UPSCALE_MODES]


def embeddings(engine) -> dict[str, Any]:
    """AUTOMATIC1111's shape: loaded name -> its vectors and width; skipped files with why."""
    library = getattr(engine, "embeddings", None)
    if library is None:
        return {"loaded": {}, "skipped": {}}
    found = library.scan()
    loaded = {name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                     "shape": max(e.vectors), "vectors": int(next(iter(e.vectors.values())).shape[0])}
              for name, e in found.items()}
    return {"loaded": loaded, "skipped": {shown_path(Path(path)): why for path, why in library.problems.items()}}
