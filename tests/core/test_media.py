"""Header probes agree with Pillow, and bad bytes are refused with ``NotAnImage``."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from core.media import NotAnImage, probe_image


def encoded(mode: str, fmt: str, size: tuple[int, int] = (1001, 517), **options: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format=fmt, **options)
    return out.getvalue()


CASES = [
    ("RGB", "WEBP", {}),  # VP8 (lossy)
    ("RGB", "WEBP", {"lossless": True}),  # VP8L
    ("RGBA", "WEBP", {}),  # VP8X (alpha)
    ("RGB", "PNG", {}),
    ("RGBA", "PNG", {}),
    ("P", "PNG", {}),
    ("RGB", "JPEG", {}),
    ("L", "JPEG", {"progressive": True}),
    ("P", "GIF", {}),
]


@pytest.mark.parametrize(("mode", "fmt", "options"), CASES, ids=[f"{m}-{f}-{o}" for m, f, o in CASES])
def test_probe_matches_pillow(mode: str, fmt: str, options: dict[str, object]) -> None:
    data = encoded(mode, fmt, **options)
    header = probe_image(data)
    with Image.open(io.BytesIO(data)) as reference:
        assert (header.width, header.height) == reference.size == (1001, 517)
        assert header.mime == Image.MIME[reference.format or ""]


def test_probe_animated_webp() -> None:
    frames = [Image.new("RGBA", (300, 200), (i, 0, 0, 255)) for i in range(0, 200, 50)]
    out = io.BytesIO()
    frames[0].save(out, format="WEBP", save_all=True, append_images=frames[1:])
    header = probe_image(out.getvalue())
    assert (header.mime, header.ext, header.width, header.height) == ("image/webp", ".webp", 300, 200)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello, not an image", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10],
    ids=["empty", "text", "truncated-webp", "truncated-png"],
)
def test_probe_refuses_bad_bytes(data: bytes) -> None:
    with pytest.raises(NotAnImage):
        probe_image(data)


def test_probe_unsupported_format() -> None:
    with pytest.raises(NotAnImage, match="unsupported image format BMP"):
        probe_image(encoded("RGB", "BMP"))


def test_probe_leaves_decompression_bombs_to_pillow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1001 × 517 is more than twice this
    with pytest.raises(NotAnImage, match="oversized"):
        probe_image(encoded("RGB", "PNG"))
