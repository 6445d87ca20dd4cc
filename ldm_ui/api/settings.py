"""What the API remembers between requests, and the VAE and style names it accepts.

The model and its VAE are the engine's state (switched through its queue); the API keeps only its own clip skip
(AUTOMATIC1111's CLIP_stop_at_last_layers: POST /options, or an override with restore_afterwards false), which its
requests use when they do not name one; until it is set, they use the Settings tab's default clip skip. Browser
tabs send their own clip skip with every job. The saving options (samples_format, jpeg_quality,
samples_filename_pattern, save_txt) are the app's remembered settings (ldm_ui/user_settings.py), shared with the
Settings tab.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldm_ui.requests import MAX_CLIP_SKIP, RequestError
from ldm_ui.styles import apply_styles, load_styles


class NotFound(RequestError):
    """A sampler, scheduler, model, VAE, style or upscaler name that does not exist; answered 404 with the list."""


def check_clip_skip(value, field: str = "CLIP_stop_at_last_layers") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLIP_SKIP:
        raise RequestError(f"{field} must be a whole number between 1 and {MAX_CLIP_SKIP}, got {value!r}")
    return value


@dataclass
class ApiSettings:
    clip_skip: int | None = None  # None: the remembered default (Settings tab, else --clip-skip)

    def set_clip_skip(self, value) -> None:
        self.clip_skip = check_clip_skip(value)


def resolve_vae(config, name) -> str:
    """An sd_vae value (Automatic, None, or a name from /sd-vae) -> the VAE picker's choice; NotFound with the list."""
    from ldm_ui.engine.vae_choice import vae_choices

    choices = vae_choices(config)
    text = str(name).strip()
    by_lower = {choice.lower(): choice for choice in choices}
    if text.lower() in by_lower:
        return by_lower[text.lower()]
    raise NotFound(f"unknown sd_vae {name!r}; choose one of: {', '.join(choices)}")


def styled_prompts(config, prompt: str, negative_prompt: str, names: list[str]) -> tuple[str, str]:
    """The prompts with the named styles merged in, in the order named, exactly as the UI's Generate applies them."""
    styles = load_styles(config.styles_file).styles
    missing = [name for name in names if name not in styles]
    if missing:
        raise NotFound(f"unknown style{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} in "
                       f"{config.styles_file.name}; choose one of: {', '.join(styles) or 'none (the file has no styles)'}")
    return apply_styles(prompt or "", negative_prompt or "", [styles[name] for name in names])
