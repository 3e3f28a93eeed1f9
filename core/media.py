"""Image inspection and thumbnails with Pillow (CPU-bound: call through ``asyncio.to_thread``); header-only
probes with imagesize."""

from __future__ import annotations

import contextlib
import io
import os
import struct
import threading
from dataclasses import dataclass

import imagesize
from PIL import Image, UnidentifiedImageError

_FORMATS = {
    "WEBP": ("image/webp", ".webp"),
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "GIF": ("image/gif", ".gif"),
}


class NotAnImage(ValueError):
    """The bytes are not a WebP, PNG, JPEG or GIF image Pillow can decode."""


@dataclass(frozen=True)
class ImageInfo:
    mime: str
    ext: str
    width: int
    height: int
    thumbnail: bytes


@dataclass(frozen=True)
class ImageHeader:
    mime: str
    ext: str
    width: int
    height: int


def _sniff(data: bytes) -> str | None:
    """Pillow's format name from the file signature (WebP: RIFF container, PNG, JPEG SOI, GIF87a/89a)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    return None


def probe_image(data: bytes) -> ImageHeader:
    """Format and width × height (pixels) from the image header, without decoding the pixels.
    Raises ``NotAnImage``.

    imagesize reads only the header; Pillow's ``Image.open`` sets up a whole WebP animation decoder, on the
    event loop for every generated image. Anything imagesize cannot
    measure, or an image larger than Pillow's decompression-bomb limit, goes through Pillow, which then
    decides and says what is wrong."""
    fmt = _sniff(data)
    if fmt is not None:
        try:
            info = imagesize.get_info(io.BytesIO(data), dpi=False, colors=False, exif_rotation=False, channels=False)
        except (ValueError, struct.error, OSError):
            info = None
        limit = Image.MAX_IMAGE_PIXELS or 2**62
        if info is not None and info.width > 0 and info.height > 0 and info.width * info.height <= limit:
            mime, ext = _FORMATS[fmt]
            return ImageHeader(mime=mime, ext=ext, width=info.width, height=info.height)
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            width, height = img.size
    except UnidentifiedImageError as err:
        raise NotAnImage("unrecognised image data") from err
    except (OSError, Image.DecompressionBombError) as err:
        raise NotAnImage(f"damaged or oversized image: {err}") from err
    if fmt not in _FORMATS:
        raise NotAnImage(f"unsupported image format {fmt or 'unknown'}")
    mime, ext = _FORMATS[fmt]
    return ImageHeader(mime=mime, ext=ext, width=width, height=height)


def make_thumbnail(data: bytes, thumbnail_pixels: int) -> bytes:
    """A WebP thumbnail whose longer side is at most ``thumbnail_pixels``; raises ``NotAnImage``."""
    return inspect_image(data, thumbnail_pixels).thumbnail


def make_thumbnails(images: list[bytes], thumbnail_pixels: int) -> list[bytes | str]:
    """``make_thumbnail`` of each image in one call (a worker-process round trip costs more than a small
    thumbnail); an image that cannot be read gives its error message instead of bytes."""
    thumbs: list[bytes | str] = []
    for data in images:
        try:
            thumbs.append(make_thumbnail(data, thumbnail_pixels))
        except NotAnImage as err:
            thumbs.append(str(err) or "not an image")
    return thumbs


def inspect_image(data: bytes, thumbnail_pixels: int) -> ImageInfo:
    """Return mime type, extension, width × height (pixels) and a WebP thumbnail whose longer side is at
    most ``thumbnail_pixels``. Raises ``NotAnImage`` for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt = img.format or ""
            if fmt not in _FORMATS:
                raise NotAnImage(f"unsupported image format {fmt or 'unknown'}")
            img.load()
            width, height = img.size
            thumb = img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB")
            thumb.thumbnail((thumbnail_pixels, thumbnail_pixels))
            out = io.BytesIO()
            thumb.save(out, format="WEBP", quality=80)
    except UnidentifiedImageError as err:
        raise NotAnImage("unrecognised image data") from err
    except (OSError, Image.DecompressionBombError) as err:
        raise NotAnImage(f"damaged or oversized image: {err}") from err
    mime, ext = _FORMATS[fmt]
    return ImageInfo(mime=mime, ext=ext, width=width, height=height, thumbnail=out.getvalue())


def lowest_cpu_priority() -> None:
    """Run this worker (process or thread) at nice 19 (Linux: per-thread priority via its native id)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
