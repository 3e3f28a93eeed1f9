"""Rate limits: per account and per client address, and Replicate's create window.

With ``events.backend: redis`` the counters live in Redis (the ``limits`` library's sliding window counters,
one counter pair a key), so every replica counts against the same limit; Replicate's 600 creates a minute is
a moving window there (a log of the last minute's creates), so no 60 s span ever holds more than the limit,
whichever replica made them.

In one process, request limits are ``LocalLimiter``: the generic cell rate algorithm over a dict, about a
microsecond a check. The ``limits`` library's in-memory strategies cost 5-11 µs a check, and every tool call
makes two: in ``python -m bench.run --only a`` they took the tool endpoint from 7,343 to 5,963 requests a
second (bench/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItem, RateLimitItemPerSecond, parse
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter

from core.deployment_settings import RateLimitSettings
from core.errors import RateLimited

log = logging.getLogger(__name__)

#: The request limits by name (``rate_limits.<name>``).
BUCKETS = ("tool_calls_per_account", "api_per_account", "per_address", "checkout_per_address", "sign_in_per_address")


def redis_storage(redis_url: str, prefix: str) -> Storage:
    """Counters in Redis at ``redis_url`` (redis-py's client), their keys under ``prefix``."""
    scheme, sep, rest = redis_url.partition("://")
    return RedisStorage(f"async+{scheme}{sep}{rest}", implementation="redispy", key_prefix=f"{prefix}rl")


def storage_for(redis_url: str | None, prefix: str) -> Storage | None:
    """``redis_storage``, or None without a Redis URL (``RateLimits`` then counts in this process)."""
    return None if redis_url is None else redis_storage(redis_url, prefix)


class LocalLimiter:
    """``limit`` requests per ``period`` seconds per key, in this process (GCRA: a key's next theoretical arrival
    time; a burst of ``limit`` passes, then one every ``period / limit`` seconds)."""

    SWEEP_EVERY = 10_000  # checks between removals of keys idle for a whole period

    def __init__(self, limit: int, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = period / limit
        self.period = period
        self.clock = clock
        self._tat: dict[str, float] = {}
        self._checks = 0

    def hit(self, key: str) -> float:
        """Count one request of ``key``: 0.0 when it may go, else the seconds until one more may."""
        now = self.clock()
        self._checks += 1
        if self._checks % self.SWEEP_EVERY == 0:
            self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
        tat = max(self._tat.get(key, now), now) + self.interval
        if tat - now > self.period:
            return tat - self.period - now
        self._tat[key] = tat
        return 0.0


class RateLimits:
    """The request limits of ``settings`` in Redis (``storage``) or, with None, in this process.

    ``check(bucket, who)`` counts one request of ``who`` (``"account:12"``, ``"address:203.0.113.5"``) and raises
    ``RateLimited`` (429, with ``retry_after_seconds``) past the bucket's limit; a request refused is not counted.
    When the counters' storage (Redis) cannot be reached, requests pass: limits protect the service, and an
    outage of theirs must not stop it (each such pass is counted in ``unchecked``).
    """

    def __init__(self, settings: RateLimitSettings, storage: Storage | None) -> None:
        self.enabled = settings.enabled
        self.storage = storage
        self._items: dict[str, RateLimitItem] = {name: parse(getattr(settings, name)) for name in BUCKETS}
        self._limiter = SlidingWindowCounterRateLimiter(storage) if storage is not None else None
        self._local = {name: LocalLimiter(item.amount, item.get_expiry()) for name, item in self._items.items()}
        self.unchecked = 0

    @property
    def shared(self) -> bool:
        """True when the counters live in Redis (``check`` awaits it); False: ``count`` decides at once."""
        return self._limiter is not None

    def count(self, bucket: str, who: str) -> None:
        """``check`` for counters in this process, without a coroutine (the hot path of every request).

        Raises:
            RateLimited: over the limit.
        """
        if self.enabled:
            wait = self._local[bucket].hit(who)
            if wait:
                raise _refused(self._items[bucket], wait)

    async def check(self, bucket: str, who: str) -> None:
        """Count one request of ``who`` against ``bucket`` (one of ``BUCKETS``).

        Raises:
            RateLimited: over the limit; ``retry_after_seconds`` says when one more request will pass.
        """
        if self._limiter is None:
            self.count(bucket, who)
            return
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
        raise _refused(item, stats.reset_time - time.time())


def _refused(item: RateLimitItem, wait: float) -> RateLimited:
    retry = max(1, math.ceil(wait))
    return RateLimited(
        f"too many requests ({item.amount} per {item.get_expiry()} s allowed); try again in {retry} s",
        retry_after_seconds=retry,
    )


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
