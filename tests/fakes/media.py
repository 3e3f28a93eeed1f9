"""Real small media files for the fakes: MP4 videos (H.264, made with PyAV) and images with Pillow."""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache

import av
from PIL import Image


def make_video(
    seed: str, size: tuple[int, int] = (96, 64), frames: int = 12, fps: int = 12, first: Image.Image | None = None
) -> bytes:
    """An H.264 MP4 (yuv420p, which browsers play) of ``frames`` frames at ``fps``: a colour from ``seed``
    with a bar that moves, or ``first`` (an image) panning sideways. ``size`` is width × height in pixels,
    each even (H.264's 4:2:0 needs it)."""
    out = io.BytesIO()
    width, height = size
    colour = tuple(hashlib.sha256(seed.encode()).digest()[:3])
    base = first.convert("RGB").resize(size) if first is not None else Image.new("RGB", size, colour)
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(frames):
            picture = base.copy()
            picture.paste((255, 255, 255), (index * width // frames, 0, index * width // frames + 4, height))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out.getvalue()


@lru_cache(maxsize=4)
def large_video(megabytes: int) -> bytes:
    """An MP4 of about ``megabytes`` MB: a short valid video followed by padding in a ``free`` box, which
    players skip (ISO/IEC 14496-12 §8.1.2), so a download of that size still decodes."""
    video = make_video("large", size=(320, 240), frames=24)
    padding = max(0, megabytes * 1_000_000 - len(video) - 8)
    return video + (padding + 8).to_bytes(4, "big") + b"free" + bytes(padding)


def remove_background(data: bytes) -> bytes:
    """A PNG with alpha: the input with its border region made transparent (what a background remover does)."""
    with Image.open(io.BytesIO(data)) as img:
        rgba = img.convert("RGBA")
    width, height = rgba.size
    mask = Image.new("L", rgba.size, 0)
    mask.paste(255, (width // 4, height // 4, width - width // 4, height - height // 4))
    rgba.putalpha(mask)
    out = io.BytesIO()
    rgba.save(out, format="PNG")
    return out.getvalue()


def scale_image(data: bytes, factor: float) -> bytes:
    """The input scaled by ``factor`` as a PNG (upscalers and face restorers return PNGs)."""
    with Image.open(io.BytesIO(data)) as img:
        scaled = img.convert("RGB").resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))))
    out = io.BytesIO()
    scaled.save(out, format="PNG")
    return out.getvalue()
