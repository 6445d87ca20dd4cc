"""What the model modules share: the error they raise and the file suffixes they accept.

models.py, single_file.py, checkpoint_files.py and clip_vocab.py all import from here, so imports point one way.
"""

from __future__ import annotations

from ldm_ui.requests import RequestError

SINGLE_FILE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".bin", ".pth")


class ModelError(RequestError):
    """A model that cannot be found or loaded; the message names it and says what is allowed."""
