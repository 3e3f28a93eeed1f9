"""The S3-compatible media store against moto's S3 server on loopback (a real S3 HTTP endpoint, boto3 talking to
it as it would to AWS, MinIO or R2)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import pytest

from core.config import Secrets, Settings
from core.generation import GenerationRequest
from storage.blobs import InvalidBlobKey
from storage.s3 import S3BlobStore
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate, make_image
from tools.app import SERVICES, create_app


def _store(endpoint: str, bucket: str, tmp_path: Path, **extra: Any) -> S3BlobStore:
    return S3BlobStore(bucket, endpoint_url=endpoint, addressing_style="path", local_cache=tmp_path / "cache",
                       **extra)  # fmt: skip


async def test_put_get_and_stream_keep_content_addressed_objects(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = _store(s3_endpoint, s3_bucket, tmp_path)
    image = make_image("granite", 0, "png")
    blob = await store.put(image, ".png")
    assert blob.key == f"{blob.sha256[:2]}/{blob.sha256}.png" and blob.size_bytes == len(image)
    assert blob.sha256 == hashlib.sha256(image).hexdigest()
    assert await store.put(image, ".png") == blob  # the same bytes: the same object
    assert await store.get(blob.key) == image and await store.exists(blob.key)
    head = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").head_object(
        Bucket=s3_bucket, Key=blob.key
    )
    assert head["ContentType"] == "image/png" and "immutable" in head["CacheControl"]
    assert store.local_path(blob.key) is None
    chunks = [chunk async for chunk in store.stream(blob.key)]
    assert b"".join(chunks) == image

    missing = "ab/" + "0" * 64 + ".webp"
    assert not await store.exists(missing) and await store.size(missing) is None
    with pytest.raises(FileNotFoundError):
        await store.get(missing)
    with pytest.raises(FileNotFoundError):
        await store.local_file(missing)
    with pytest.raises(InvalidBlobKey):
        await store.get("../../etc/passwd")

    async with aiohttp.ClientSession() as http, http.get(store.presigned_url(blob.key)) as response:
        assert response.status == 200 and await response.read() == image
        assert response.headers["Content-Type"] == "image/png"


async def test_large_files_upload_and_the_local_cache_keeps_the_newest(
    s3_endpoint: str, s3_bucket: str, tmp_path: Path
) -> None:
    store = _store(s3_endpoint, s3_bucket, tmp_path, local_cache_bytes=16 * 1_048_576)
    video = os.urandom(9 * 1_048_576)  # above boto3's 8 MiB multipart threshold
    path = store.temp_path(".mp4")
    path.write_bytes(video)
    digest = hashlib.sha256(video).hexdigest()
    blob = await store.put_file(path, digest, ".mp4")
    assert not path.exists() and blob.size_bytes == len(video)
    assert await store.size(blob.key) == len(video)

    first = await store.local_file(blob.key)
    assert first.read_bytes() == video and first.is_relative_to(tmp_path / "cache")
    assert await store.local_file(blob.key) == first  # cached: not fetched again
    other = await store.put(os.urandom(9 * 1_048_576), ".mp4")
    second = await store.local_file(other.key)
    # 18 MiB would pass the 16 MiB limit: the least recently used file went.
    assert second.exists() and not first.exists()
    assert (await store.local_file(blob.key)).read_bytes() == video  # fetched again when asked


@pytest.mark.parametrize("serve", ["redirect", "stream"])
async def test_generated_images_and_uploads_live_in_the_bucket_and_are_served(
    serve: str, database_url: str, tmp_path: Path, s3_endpoint: str, s3_bucket: str,
    replicate_fake: FakeReplicate, aiohttp_client: Any,
) -> None:  # fmt: skip
    settings: Settings = make_settings(
        database_url, tmp_path,
        media={"backend": "s3", "s3": {"endpoint_url": s3_endpoint, "bucket": s3_bucket, "addressing_style": "path",
                                        "serve": serve, "local_cache": str(tmp_path / "cache")}},
    )  # fmt: skip
    app = create_app(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token))
    client = await aiohttp_client(app)
    services = app[SERVICES]
    account = await services.accounts.create("Acme")
    job = await services.generation.generate(account.id, GenerationRequest(prompt="a granite kitchen"))
    await services.generation.drain()  # the thumbnail is made after the answer
    asset = await services.library.get(account.id, job.assets[0].id)
    assert asset.file_path is None and not (tmp_path / "media").exists()
    objects = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").list_objects_v2(Bucket=s3_bucket)
    keys = {item["Key"] for item in objects["Contents"]}
    assert asset.blob_key in keys and asset.thumb_key in keys

    response = await client.get(f"/media/{asset.blob_key}", allow_redirects=False)
    if serve == "redirect":
        assert response.status == 302 and response.headers["Location"].startswith(f"{s3_endpoint}/{s3_bucket}/")
        async with aiohttp.ClientSession() as http, http.get(response.headers["Location"]) as followed:
            data = await followed.read()
    else:
        assert response.status == 200 and response.content_type == "image/webp"
        assert "immutable" in response.headers["Cache-Control"]
        data = await response.read()
    assert data == await services.blobs.get(asset.blob_key) and len(data) == asset.size_bytes
    if serve == "stream":
        response = await client.get("/media/ab/" + "0" * 64 + ".webp")
        assert response.status == 404

    uploaded, _ = await services.library.import_image(account.id, make_image("quartz", 1, "png"), name="Quartz")
    assert await services.blobs.exists(uploaded.blob_key)
    assert (await services.blobs.local_file(uploaded.blob_key)).read_bytes() == make_image("quartz", 1, "png")

    ready = await (await client.get("/readyz")).json()
    assert ready["media"] == "ok" and ready["redis"] == ("ok" if settings.events.backend == "redis" else "not used")


async def test_readyz_says_when_the_bucket_is_unreachable(
    database_url: str, tmp_path: Path, s3_endpoint: str, replicate_fake: FakeReplicate, aiohttp_client: Any
) -> None:
    settings = make_settings(
        database_url, tmp_path,
        media={"backend": "s3", "s3": {"endpoint_url": s3_endpoint, "bucket": "no-such-bucket-here",
                                        "addressing_style": "path"}},
    )  # fmt: skip
    client = await aiohttp_client(create_app(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token)))
    response = await client.get("/readyz")
    body = await response.json()
    assert response.status == 503 and body["status"] == "not_ready"
    assert body["media"].startswith("unreachable") and body["database"] == "ok"
    assert (await client.get("/healthz")).status == 200  # alive all the same


async def test_doctor_checks_the_bucket_and_redis_of_a_replica(
    isolated_env: None, tmp_path: Path, s3_endpoint: str, s3_bucket: str, redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from tools.doctor import run_checks

    def settings(bucket: str, redis: str) -> Settings:
        return make_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'd.db'}", tmp_path, events={"backend": "redis"}, redis={"url": redis},
            media={"backend": "s3", "s3": {"endpoint_url": s3_endpoint, "bucket": bucket, "addressing_style": "path"}},
        )  # fmt: skip

    monkeypatch.setenv("SHOWME_SECRET_KEY", "x" * 40)
    found = {c.name: c for c in await run_checks(settings(s3_bucket, redis_url), None)}
    assert found["media store"].status == "ok" and s3_bucket in found["media store"].detail
    assert found["redis"].status == "ok"
    monkeypatch.delenv("SHOWME_SECRET_KEY")
    found = {c.name: c for c in await run_checks(settings("missing-bucket", "redis://127.0.0.1:1/0"), None)}
    assert found["media store"].status == "fail" and "create the bucket" in (found["media store"].fix or "")
    assert found["redis"].status == "fail" and found["SHOWME_SECRET_KEY"].status == "fail"
