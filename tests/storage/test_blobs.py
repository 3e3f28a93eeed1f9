from __future__ import annotations

from pathlib import Path

import pytest

from storage.blobs import InvalidBlobKey, LocalBlobStore, check_key


async def test_content_addressed_atomic_put(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    first = await store.put(b"hello", ".webp")
    second = await store.put(b"hello", ".webp")
    assert first == second and first.size_bytes == 5
    assert first.key == f"{first.sha256[:2]}/{first.sha256}.webp"
    assert await store.get(first.key) == b"hello"
    assert not [p for p in tmp_path.rglob(".tmp-*")]
    thumb = await store.put(b"small", ".webp", prefix="thumbs/")
    assert thumb.key.startswith("thumbs/") and await store.exists(thumb.key)


@pytest.mark.parametrize(
    "key",
    ["../etc/passwd", "ab/../../x.webp", "/abs/path.png", "ab/" + "0" * 63 + ".png", "AB/" + "a" * 64 + ".png", ""],
)
def test_rejects_keys_that_are_not_ours(key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        check_key(key)


def test_local_path_stays_under_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    key = "ab/" + "a" * 64 + ".png"
    assert store.local_path(key) == tmp_path.resolve() / key
