"""Frames -> animated GIF (Pillow) and MP4 (H.264 through imageio-ffmpeg's bundled ffmpeg), as bytes.

The task hands the bytes to `TaskContext.save_file`, which writes them (locally) or hands them to the front process
(on a Ray replica).
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def animation_sequence(frames: list[Image.Image], ping_pong: bool) -> list[Image.Image]:
    """The frames in play order; ping-pong plays them back again without repeating either end."""
    return list(frames) + (list(frames[-2:0:-1]) if ping_pong else [])


def encode_gif(frames: list[Image.Image], fps: float) -> bytes:
    """Looping GIF. GIF stores delays in 1/100 s, so the frame rate is rounded to the nearest representable one."""
    rgb = [frame.convert("RGB") for frame in frames]
    out = io.BytesIO()
    rgb[0].save(out, format="GIF", save_all=True, append_images=rgb[1:], duration=gif_delay_ms(fps), loop=0,
                disposal=1, optimize=False)
    return out.getvalue()


def gif_delay_ms(fps: float) -> int:
    return max(10, int(round(100.0 / fps)) * 10)


def encode_mp4(frames: list[Image.Image], fps: float) -> bytes:
    """H.264 MP4 in yuv420p, which every browser and phone plays; sides are padded to even numbers if needed.
    ffmpeg writes it to a private temporary folder (its faststart pass needs a seekable file)."""
    import imageio_ffmpeg

    width, height = frames[0].size
    even = (width + width % 2, height + height % 2)
    with tempfile.TemporaryDirectory(prefix="ldm-ui-mp4-") as folder:
        path = Path(folder) / "animation.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path), even, fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", quality=8,
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
        return path.read_bytes()
