"""Image inspection and thumbnails with Pillow (CPU-bound: call through ``asyncio.to_thread``)."""

from __future__ import annotations

import io
from dataclasses import dataclass

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


def probe_image(data: bytes) -> ImageHeader:
    """Format and width × height (pixels) from the image header, without decoding the pixels (fast).
    Raises ``NotAnImage``."""
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
