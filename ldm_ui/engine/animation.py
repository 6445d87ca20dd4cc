"""Frames -> animated GIF (Pillow) and MP4 (H.264 through imageio-ffmpeg's bundled ffmpeg).

Both are written to a temporary name in the target folder and renamed, so no reader sees half a file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def animation_sequence(frames: list[Image.Image], ping_pong: bool) -> list[Image.Image]:
    """The frames in play order; ping-pong plays them back again without repeating either end."""
    return list(frames) + (list(frames[-2:0:-1]) if ping_pong else [])


def _temp_path(folder: Path, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".writing-", suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def write_gif(frames: list[Image.Image], path: Path, fps: float) -> Path:
    """Looping GIF. GIF stores delays in 1/100 s, so the frame rate is rounded to the nearest representable one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path.parent, ".gif")
    try:
        rgb = [frame.convert("RGB") for frame in frames]
        rgb[0].save(tmp, format="GIF", save_all=True, append_images=rgb[1:], duration=gif_delay_ms(fps), loop=0,
                    disposal=1, optimize=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def gif_delay_ms(fps: float) -> int:
    return max(10, int(round(100.0 / fps)) * 10)


def write_mp4(frames: list[Image.Image], path: Path, fps: float) -> Path:
    """H.264 MP4 in yuv420p, which every browser and phone plays; sides are padded to even numbers if needed."""
    import imageio_ffmpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = frames[0].size
    even = (width + width % 2, height + height % 2)
    tmp = _temp_path(path.parent, ".mp4")
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp), even, fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=8,
            macro_block_size=1, ffmpeg_log_level="error", output_params=["-movflags", "+faststart"],
        )
        writer.send(None)  # start ffmpeg
        try:
            for frame in frames:
                canvas = Image.new("RGB", even)
                canvas.paste(frame.convert("RGB"), (0, 0))
                writer.send(np.ascontiguousarray(np.asarray(canvas, dtype=np.uint8)))
        finally:
            writer.close()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
