"""Redis between replicas: viewer events, cache invalidations, shared rate limits and the create window. Each
"replica" here is a full set of services (``open_services``) on one database and one Redis, in one test process;
``tests/tools/test_replicas.py`` runs real ``showme serve`` processes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from core.config import Secrets
from core.deployment_settings import RateLimitSettings
from core.errors import RateLimited
from core.events import channel
from core.generation import GenerationRequest
from core.providers.redis import RedisBus
from core.rate_limits import CreateWindow, LocalLimiter, RateLimits, redis_storage, storage_for
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate, make_image
from tools.services import Services, open_services


async def _bus(url: str, prefix: str) -> RedisBus:
    bus = RedisBus(url, prefix, queue_size=16)
    await bus.start()
    return bus


async def test_events_reach_subscribed_replicas_once_and_broadcasts_skip_the_sender(
    redis_url: str, redis_prefix: str
) -> None:
    a, b = await _bus(redis_url, redis_prefix), await _bus(redis_url, redis_prefix)
    try:
        on_a = await a.open("7:call")
        on_b = await b.open("7:call")
        other = await b.open("8:call")
        assert a.publish("7:call", {"type": "image_generated", "n": 1}) == 1  # A's own viewer, at once
        got_b = json.loads(await asyncio.wait_for(on_b.get(), 5))
        assert got_b == {"v": 1, "type": "image_generated", "n": 1}
        assert json.loads(on_a.queue.get_nowait())["n"] == 1
        await asyncio.sleep(0.2)
        assert on_a.queue.empty() and other.queue.empty()  # not twice to A; not to another conversation

        seen_a: list[dict[str, Any]] = []
        seen_b: list[dict[str, Any]] = []
        a.on("library", seen_a.append)
        b.on("library", seen_b.append)
        a.send("library", {"account": 7, "words": ["granite"], "renew": False})
        for _ in range(100):
            if seen_b:
                break
            await asyncio.sleep(0.02)
        assert seen_b == [{"account": 7, "words": ["granite"], "renew": False}] and seen_a == []

        b.unsubscribe(on_b)
        for _ in range(100):
            if f"{redis_prefix}ev:7:call" not in b._channels:
                break
            await asyncio.sleep(0.02)
        assert f"{redis_prefix}ev:7:call" not in b._channels and f"{redis_prefix}ev:8:call" in b._channels
        a.publish("7:call", {"type": "image_generated", "n": 2})
        await asyncio.sleep(0.2)
        assert on_b.queue.empty()
    finally:
        await a.close()
        await b.close()


@pytest.fixture
async def replicas(
    tmp_path: Path, redis_url: str, redis_prefix: str, replicate_fake: FakeReplicate
) -> AsyncIterator[tuple[Services, Services]]:
    """Two sets of services on one SQLite file, one media directory and one Redis."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    settings = make_settings(
        url, tmp_path, events={"backend": "redis"}, redis={"url": redis_url, "key_prefix": redis_prefix},
        media={"search_cache_seconds": 30, "search_stale_seconds": 30}, tools={"key_cache_seconds": 30},
    )  # fmt: skip
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token, SHOWME_SECRET_KEY="shared-signing-key")
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(open_services(settings, secrets=secrets))
        b = await stack.enter_async_context(open_services(settings, secrets=secrets))
        yield a, b


async def _eventually(check: Any, timeout: float = 1.0) -> float:
    """Seconds until ``await check()`` is true; fails after ``timeout``."""
    began = time.monotonic()
    while not await check():
        assert time.monotonic() - began < timeout, "not within the time allowed"
        await asyncio.sleep(0.01)
    return time.monotonic() - began


async def test_a_change_on_one_replica_reaches_the_others_caches_and_viewers(
    replicas: tuple[Services, Services],
) -> None:
    a, b = replicas
    account = await a.accounts.create("Acme Granite")
    assert await b.library.search(account.id, "galaxy granite") == []  # cached empty on B for 30 s

    await a.library.import_image(account.id, make_image("galaxy", 0, "png"), name="Black Galaxy granite")

    async def found_on_b() -> bool:
        return bool(await b.library.search(account.id, "galaxy granite"))

    assert await _eventually(found_on_b) < 1.0

    key = await a.accounts.create_api_key(account.id)
    assert await b.accounts.authenticate(key.key) is not None  # cached on B for 30 s
    await a.accounts.revoke_api_key(account.id, key.id)
    assert await a.accounts.authenticate(key.key) is None

    async def refused_on_b() -> bool:
        return await b.accounts.authenticate(key.key) is None

    assert await _eventually(refused_on_b) < 1.0

    viewer = await b.hub.open(channel(account.id, "call_1"))
    await a.generation.generate(account.id, GenerationRequest(prompt="a kitchen", conversation_id="call_1"))
    kinds = []
    while "image_generated" not in kinds:
        kinds.append(json.loads(await asyncio.wait_for(viewer.get(), 5))["type"])
    assert kinds == ["generation_started", "image_generated"]


async def test_rate_limits_hold_for_every_replica_together(redis_url: str, redis_prefix: str) -> None:
    settings = RateLimitSettings(tool_calls_per_account="5/minute")
    first = RateLimits(settings, storage_for(redis_url, redis_prefix))
    second = RateLimits(settings, storage_for(redis_url, redis_prefix))
    passed = 0
    refusals: list[RateLimited] = []
    for i in range(8):
        try:
            await (first if i % 2 else second).check("tool_calls_per_account", "account:1")
            passed += 1
        except RateLimited as err:
            refusals.append(err)
    assert passed == 5 and len(refusals) == 3
    assert all(1 <= err.retry_after_seconds <= 60 and err.status == 429 for err in refusals)
    await first.check("tool_calls_per_account", "account:2")  # another account has its own count


async def test_the_create_window_is_shared_and_never_exceeded(redis_url: str, redis_prefix: str) -> None:
    windows = [CreateWindow(redis_storage(redis_url, redis_prefix), 3, window_seconds=1) for _ in range(2)]
    times: list[float] = []

    async def create(i: int) -> None:
        await windows[i % 2].acquire()
        times.append(time.monotonic())

    began = time.monotonic()
    await asyncio.gather(*(create(i) for i in range(9)))
    times.sort()
    assert times[-1] - began >= 1.9  # three windows' worth
    for i in range(len(times) - 3):
        assert times[i + 3] - times[i] >= 0.95, times  # never four in one second


async def test_without_redis_limits_let_requests_through_and_the_server_says_why_it_cannot_start(
    tmp_path: Path, replicate_fake: FakeReplicate
) -> None:
    from core.errors import ConfigError

    nowhere = "redis://127.0.0.1:1/0"
    limits = RateLimits(RateLimitSettings(tool_calls_per_account="1/minute"), storage_for(nowhere, "x:"))
    for _ in range(3):
        await limits.check("tool_calls_per_account", "account:1")  # Redis is down: limits do not stop the service
    assert limits.unchecked == 3
    await CreateWindow(redis_storage(nowhere, "x:"), 1).acquire()  # nor Replicate creates

    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", tmp_path, events={"backend": "redis"},
                             redis={"url": nowhere})  # fmt: skip
    with pytest.raises(ConfigError, match="does not answer") as err:
        async with open_services(settings, secrets=Secrets(REPLICATE_API_TOKEN=replicate_fake.token)):
            pass
    assert "events.backend: local" in err.value.message


def test_the_local_limiter_lets_a_burst_through_then_one_per_interval() -> None:
    now = [1000.0]
    limiter = LocalLimiter(3, 60, clock=lambda: now[0])
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(20.0)  # one place comes back every 60 / 3 s
    assert limiter.hit("b") == 0.0  # another key has its own count
    now[0] += 20
    assert limiter.hit("a") == 0.0 and limiter.hit("a") == pytest.approx(20.0)
    now[0] += 600
    limiter.SWEEP_EVERY = 1
    limiter.hit("c")
    assert set(limiter._tat) == {"c"}  # idle keys are forgotten
