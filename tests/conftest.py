"""Shared fixtures: a database per test (SQLite always, PostgreSQL when SHOWME_TEST_POSTGRES_URL is set),
the fake Replicate server on https with a test CA, and the real services built from settings. Async tests run
on uvloop, the event loop ``showme serve`` runs on (``server.event_loop: auto``)."""

from __future__ import annotations

import os
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from core.clock import ManualClock
from core.config import Secrets, Settings, load_settings
from storage import migrate
from storage.db import create_engine
from tests.fakes.replicate import FakeReplicate, RunningFake
from tests.fakes.serve import serve
from tests.fakes.stripe import FakeStripe
from tests.fakes.telegram import FakeTelegram
from tools.services import Services, open_services

POSTGRES_URL = os.environ.get("SHOWME_TEST_POSTGRES_URL")


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every async test and fixture on uvloop (pytest-asyncio >= 1.4; one factory keeps the test names)."""
    import uvloop

    return {"uvloop": uvloop.new_event_loop}


def _pg_admin_url() -> str:
    assert POSTGRES_URL
    return POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'showme.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip(
            "PostgreSQL tests need SHOWME_TEST_POSTGRES_URL (e.g. postgresql+asyncpg://postgres@127.0.0.1/test)"
        )
    import asyncpg

    name = f"showme_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_pg_admin_url())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = POSTGRES_URL.rpartition("/")
    url = f"{base}/{name}"
    # PostgreSQL is upgraded explicitly (`showme db upgrade`), as an operator would.
    engine = create_engine(url)
    await migrate.upgrade(engine)
    await engine.dispose()
    yield url
    admin = await asyncpg.connect(_pg_admin_url())
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    ca = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, path


@pytest.fixture
def server_ssl(test_ca: tuple[trustme.CA, Path]) -> ssl.SSLContext:
    ca, _ = test_ca
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def replicate_fake(
    server_ssl: ssl.SSLContext, test_ca: tuple[trustme.CA, Path], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[FakeReplicate]:
    """The fake Replicate on https; the real client trusts it through SSL_CERT_FILE + REPLICATE_BASE_URL."""
    fake = FakeReplicate()
    async with RunningFake(fake, server_ssl) as running:
        monkeypatch.setenv("REPLICATE_BASE_URL", running.base_url)
        monkeypatch.setenv("SSL_CERT_FILE", str(test_ca[1]))
        yield running


@pytest.fixture
async def stripe_fake() -> AsyncIterator[FakeStripe]:
    """The fake Stripe API on plain http loopback (stripe-python reaches it through ``stripe.api_base``)."""
    fake = FakeStripe()
    async with serve(fake.app()) as fake.base_url:
        yield fake


@pytest.fixture
async def telegram_fake() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    async with serve(fake.app()) as fake.base_url:
        yield fake


@pytest.fixture
async def discord_fake() -> AsyncIterator[Any]:
    from tests.fakes.discord import FakeDiscord

    fake = FakeDiscord()
    async with serve(fake.app()) as fake.base_url:
        yield fake
        for ws in list(fake.sockets):
            await ws.close()


#: ``SHOWME_TEST_BACKENDS=redis,s3`` runs every test built on ``make_settings`` with the several-replica
#: backends: events through Redis (a key prefix per test) and media in a bucket of moto's S3 server (one per test).
TEST_BACKENDS = {name.strip() for name in os.environ.get("SHOWME_TEST_BACKENDS", "").split(",") if name.strip()}
_moto: dict[str, str] = {}


def _moto_endpoint() -> str:
    """moto's S3 server for ``SHOWME_TEST_BACKENDS=s3``, started once (it ends with the test process)."""
    if not _moto:
        import subprocess
        import sys
        import time
        import urllib.request

        from tests.fakes.serve import free_port

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
        port = free_port()
        import atexit

        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        atexit.register(proc.terminate)
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        _moto["url"] = url
    return _moto["url"]


def _backend_settings() -> dict[str, Any]:
    values: dict[str, Any] = {}
    if "redis" in TEST_BACKENDS:
        values["events"] = {"backend": "redis"}
        values["redis"] = {"url": REDIS_URL, "key_prefix": f"showme-test-{uuid.uuid4().hex[:10]}:"}
    if "s3" in TEST_BACKENDS:
        import boto3

        endpoint, bucket = _moto_endpoint(), f"showme-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        values["media"] = {"backend": "s3", "s3": {"endpoint_url": endpoint, "bucket": bucket,
                                                     "addressing_style": "path", "serve": "stream"}}  # fmt: skip
    return values


def backend_environment(tmp_path: Path) -> dict[str, str]:
    """``SHOWME_TEST_BACKENDS`` as the environment of a ``showme`` process (``_backend_settings``)."""
    env: dict[str, str] = {}
    for section, values in _backend_settings().items():
        for key, value in values.items():
            if isinstance(value, dict):
                env.update({f"SHOWME_{section}__{key}__{k}".upper(): str(v) for k, v in value.items()})
            else:
                env[f"SHOWME_{section}__{key}".upper()] = str(value)
    if "SHOWME_MEDIA__S3__BUCKET" in env:
        env["SHOWME_MEDIA__S3__LOCAL_CACHE"] = str(tmp_path / "media-cache")
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            env[name] = os.environ[name]
    return env


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database": {"url": database_url},
        "media": {"root": str(tmp_path / "media")},
        "server": {"secret_key_file": str(tmp_path / "secret_key")},
        "generation": {
            "download_backoff_seconds": [0.01, 0.02, 0.04],
            "lease_seconds": 30,
            "thumbnail_worker": "thread",
        },
        "replicate": {"wait_seconds": 5, "timeout_seconds": 10},
        "prompts": {"blocked_terms": ["gore"]},
    }
    for key, value in _backend_settings().items():
        values[key] = {**values.get(key, {}), **value}
    if "media" in values and "s3" in values["media"]:
        values["media"]["s3"]["local_cache"] = str(tmp_path / "media-cache")
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return load_settings(None, **values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def services(settings: Settings, replicate_fake: FakeReplicate, clock: ManualClock) -> AsyncIterator[Services]:
    async with open_services(settings, clock=clock, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token)) as s:
        yield s


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("SHOWME_") and key != "SHOWME_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    yield


@pytest.fixture
async def huggingface_fake() -> AsyncIterator[Any]:
    """The fake Hugging Face Inference Providers router on plain http loopback."""
    from tests.fakes.huggingface import FakeHuggingFace

    fake = FakeHuggingFace()
    async with serve(fake.app()) as fake.base_url:
        yield fake


REDIS_URL = os.environ.get("SHOWME_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """Redis at ``SHOWME_TEST_REDIS_URL`` (default 127.0.0.1:6379); the test is skipped when it does not answer.
    Tests keep apart by a key prefix of their own (``redis_prefix``)."""
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError

    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except (RedisError, OSError):
        pytest.skip(f"Redis tests need a Redis server at {REDIS_URL} (set SHOWME_TEST_REDIS_URL)")
    finally:
        await client.aclose()
    yield REDIS_URL


@pytest.fixture
def redis_prefix() -> str:
    return f"showme-test-{uuid.uuid4().hex[:10]}:"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone S3 server (``python -m moto.server``, a real S3 HTTP endpoint) on loopback for the
    session; each test makes its own bucket (``s3_bucket``). Credentials: any, from the environment."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.fakes.serve import free_port

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "moto's S3 server did not start"
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket on the moto server."""
    import boto3

    name = f"showme-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name
