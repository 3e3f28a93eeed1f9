"""Video files with PyAV (FFmpeg's libraries): size, duration and a poster frame. CPU- and disk-bound: call
through ``asyncio.to_thread``."""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

#: Containers we store, by the name FFmpeg gives their format: mime type and file extension.
_CONTAINERS = {"mp4": ("video/mp4", ".mp4"), "mov": ("video/mp4", ".mp4"), "webm": ("video/webm", ".webm")}


class NotAVideo(ValueError):
    """The file is not an MP4 or WebM video with a video stream FFmpeg can decode."""


@dataclass(frozen=True)
class VideoInfo:
    """A probed video: mime type, extension, width × height (pixels), duration (seconds), frames per second,
    and a WebP poster (its first frame, the longer side at most the requested pixels)."""

    mime: str
    ext: str
    width: int
    height: int
    duration_seconds: float
    fps: float | None
    poster: bytes


def _duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """Seconds: the stream's own duration, else the container's (FFmpeg's ``AV_TIME_BASE`` microseconds)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return 0.0


def probe_video(path: Path, poster_pixels: int) -> VideoInfo:
    """Read the header of the video at ``path`` and decode its first frame as the poster.

    Raises:
        NotAVideo: not a video container we store, no video stream, or no frame decodes.
    """
    try:
        with av.open(str(path)) as container:
            names = set(container.format.name.split(","))
            kind = next((_CONTAINERS[n] for n in ("mp4", "mov", "webm") if n in names), None)
            if kind is None or not container.streams.video:
                raise NotAVideo(f"not an MP4 or WebM video (container {container.format.name})")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            rate = stream.average_rate
            duration = _duration(container, stream)
            frame = next(container.decode(stream), None)
            if frame is None:
                raise NotAVideo("the video has no frame that decodes")
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    except av.FFmpegError as err:
        raise NotAVideo(f"damaged or unsupported video: {err}") from err
    image.thumbnail((poster_pixels, poster_pixels))
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=80)
    mime, ext = kind
    fps = float(rate) if isinstance(rate, Fraction) and rate else None
    return VideoInfo(mime, ext, width, height, round(duration, 3), fps, out.getvalue())


def decode_frames(path: Path) -> int:
    """How many frames of the first video stream decode (raises ``NotAVideo``)."""
    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except av.FFmpegError as err:
        raise NotAVideo(f"damaged or unsupported video: {err}") from err
