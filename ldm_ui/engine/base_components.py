"""The components a transformer-only single file lacks, taken from a diffusers folder of the same family.

A FLUX.1 single file as Black Forest Labs publishes it (flux1-dev.safetensors, flux1-schnell.safetensors) holds
only the transformer. diffusers' documented way to use one is to load the transformer with
`FluxTransformer2DModel.from_single_file` and the rest of the pipeline with `FluxPipeline.from_pretrained` from a
FLUX.1 repository. The rest includes the T5-XXL encoder with its SentencePiece tokenizer, which no installed
package ships and ldm-ui cannot make offline, so it comes from the user's own FLUX.1 diffusers folder in
models/diffusers (its transformer/ subfolder may be left out of the download).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ldm_ui.engine.families import family_named, family_of_pipeline_class
from ldm_ui.engine.model_types import ModelError

log = logging.getLogger(__name__)


def base_folders(diffusers_dir: Path, family: str) -> list[Path]:
    """The diffusers folders in `diffusers_dir` whose model_index.json names a pipeline of `family`, by name."""
    found = []
    if not Path(diffusers_dir).is_dir():
        return found
    for folder in sorted(Path(diffusers_dir).iterdir()):
        index = folder / "model_index.json"
        try:
            class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
        except (OSError, ValueError, AttributeError):
            continue
        if family_of_pipeline_class(class_name) == family:
            found.append(folder)
    return found


def base_folder(diffusers_dir: Path, family: str, file_name: str, label: str, needs: str) -> Path:
    """The first such folder; a ModelError saying what to provide when there is none."""
    folders = base_folders(diffusers_dir, family)
    if not folders:
        example = {"flux": "black-forest-labs/FLUX.1-schnell or FLUX.1-dev"}.get(family, "")
        raise ModelError(
            f"{file_name} is a {label} transformer: a {family_named(family).label} single file holds only the "
            f"transformer, and {needs} come from a {family_named(family).label} diffusers folder, of which there is "
            f"none in models/diffusers. Download one ({example}; its transformer/ folder is not needed) into "
            "models/diffusers, or pick that folder or its hub id as the model instead")
    if len(folders) > 1:
        log.info("%s: taking its other components from %s (first of %s)", file_name, folders[0].name,
                 ", ".join(f.name for f in folders))
    return folders[0]


def load_with_base(path: Path, config_folder: Path, base: Path, dtype, allow_pickle: bool):
    """The pipeline of `base` with the transformer from the single file (converted by diffusers with the shipped
    config) and the scheduler of the file's variant (FLUX.1-dev and -schnell shift their schedules differently)."""
    import diffusers

    index = json.loads((Path(config_folder) / "model_index.json").read_text(encoding="utf-8"))
    pipeline_class = getattr(diffusers, index["_class_name"])
    transformer_class = getattr(diffusers, index["transformer"][1])
    scheduler_class = getattr(diffusers, index["scheduler"][1])
    transformer = transformer_class.from_single_file(str(path), config=str(config_folder), subfolder="transformer",
                                                     local_files_only=True, torch_dtype=dtype)
    scheduler = scheduler_class.from_pretrained(str(config_folder), subfolder="scheduler", local_files_only=True)
    return pipeline_class.from_pretrained(str(base), transformer=transformer, scheduler=scheduler, torch_dtype=dtype,
                                          local_files_only=True, use_safetensors=None if allow_pickle else True)
