"""Rate limits (the ``limits`` library): per account and per client address, and Replicate's create window.

In one process the counters live in memory; with ``events.backend: redis`` they live in Redis, so every replica
counts against the same limit. Request limits use sliding window counters (one counter pair a key, O(1));
Replicate's 600 creates a minute is a moving window (a log of the last minute's creates), so no 60 s span
ever holds more than the limit, whichever replica made them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from core.deployment_settings import RateLimitSettings
from core.errors import RateLimited

log = logging.getLogger(__name__)

#: The request limits by name (``rate_limits.<name>``).
BUCKETS = ("tool_calls_per_account", "api_per_account", "per_address", "checkout_per_address")


def storage_for(redis_url: str | None, prefix: str) -> Storage:
    """Counters in Redis (``redis_url``, redis-py's client) or, without one, in this process's memory."""
    if redis_url is None:
        return MemoryStorage()
    scheme, sep, rest = redis_url.partition("://")
    return RedisStorage(f"async+{scheme}{sep}{rest}", implementation="redispy", key_prefix=f"{prefix}rl")


class RateLimits:
    """The request limits of ``settings`` over ``storage``.

    ``check(bucket, who)`` counts one request of ``who`` (``"account:12"``, ``"address:203.0.113.5"``) and raises
    ``RateLimited`` (429, with ``retry_after_seconds``) past the bucket's limit; a request refused is not counted.
    When the counters' storage (Redis) cannot be reached, requests pass: limits protect the service, and an
    outage of theirs must not stop it (each such pass is counted in ``unchecked``).
    """

    def __init__(self, settings: RateLimitSettings, storage: Storage) -> None:
        self.enabled = settings.enabled
        self.storage = storage
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._items: dict[str, RateLimitItem] = {name: parse(getattr(settings, name)) for name in BUCKETS}
        self.unchecked = 0

    async def check(self, bucket: str, who: str) -> None:
        """Count one request of ``who`` against ``bucket`` (one of ``BUCKETS``).

        Raises:
            RateLimited: over the limit; ``retry_after_seconds`` says when one more request will pass.
        """
        if not self.enabled:
            return
        item = self._items[bucket]
        try:
            if await self._limiter.hit(item, bucket, who):
                return
            stats = await self._limiter.get_window_stats(item, bucket, who)
        except Exception as err:  # the storage's own errors (redis-py's) vary with its client
            self.unchecked += 1
            if self.unchecked % 1000 == 1:
                log.warning("rate limits not checked (%d requests so far): %s", self.unchecked, err)
            return
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many requests ({item.amount} per {item.get_expiry()} s allowed); try again in {retry} s",
            retry_after_seconds=retry,
        )

    async def ping(self) -> bool:
        """True when the counters' storage answers."""
        return bool(await self.storage.check())


class CreateWindow:
    """At most ``limit`` acquisitions in any ``window_seconds`` (Replicate: 600 in 60 s), shared by every process
    on ``storage``: a moving window.

    ``acquire`` waits (sleeping until the oldest acquisition in the window has aged out) until it may go. When
    the storage cannot be reached it lets the create go (Replicate's own 429 then slows it down).
    """

    def __init__(
        self, storage: Storage, limit: int, *, window_seconds: int = 60, name: str = "replicate-creates"
    ) -> None:
        self.storage = storage
        self.name = name
        self._item = RateLimitItemPerSecond(limit, window_seconds)
        self._limiter = MovingWindowRateLimiter(storage)

    async def acquire(self) -> None:
        """Wait for a place in the window and take it."""
        while True:
            try:
                if await self._limiter.hit(self._item, self.name):
                    return
                stats = await self._limiter.get_window_stats(self._item, self.name)
            except Exception as err:
                log.warning("the shared create window cannot be checked, creating anyway: %s", err)
                return
            await asyncio.sleep(min(float(self._item.get_expiry()), max(0.01, stats.reset_time - time.time())))
