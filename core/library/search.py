"""Search terms and the search cache: single-flight, jittered expiry, stale-while-revalidate."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from cachetools import TLRUCache

log = logging.getLogger(__name__)

V = TypeVar("V")
SearchKey = tuple[int, tuple[str, ...], int]  # account, terms, limit

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "in",
        "on",
        "with",
        "and",
        "or",
        "for",
        "to",
        "me",
        "show",
        "some",
        "any",
        "our",
        "your",
        "my",
        "is",
        "are",
        "it",
        "this",
        "that",
        "please",
        "image",
        "picture",
        "photo",
        "at",
        "by",
    ]
)
_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=4096)  # agents repeat the same few queries
def _terms(query: str, limit: int) -> tuple[str, ...]:
    words = [w for w in _WORD.findall(query.lower()) if w not in STOPWORDS]
    return tuple(dict.fromkeys(words))[:limit]


def text_words(*texts: str | None) -> frozenset[str]:
    """Every word (lower-case letters and digits) of ``texts``: what a new or changed asset can be found by."""
    return frozenset(word for text in texts if text for word in _WORD.findall(text.lower()))


def query_terms(query: str, limit: int = 12) -> list[str]:
    """The searchable words of ``query``: lower-case letters and digits, stop words dropped, at most
    ``limit``."""
    return list(_terms(query, limit))


class SearchCache(Generic[V]):
    """Search results per (account, terms, limit).

    An entry is fresh for 80-100 % of ``fresh_seconds`` (entries made together do not expire together);
    for ``stale_seconds`` after that a lookup still answers at once with the old value while one background
    search renews it (stale-while-revalidate, RFC 5861), at most ``renewals`` at a time. Concurrent lookups
    of a missing key share one search. ``invalidate(account, words)`` expires the account's entries whose
    terms match one of ``words`` (a term matches the words it is a prefix of, as searches do), or all of them
    without ``words``; a search that began before such an invalidation is not cached.

    Args:
        fresh_seconds: 0 disables caching.
        stale_seconds: how long an expired entry may still answer.
        monotonic: the time source (seconds).
    """

    MAX_ENTRIES = 50_000
    #: Invalidations remembered per account; a search that outlived more of them is not cached.
    MAX_CHANGES = 64

    def __init__(
        self,
        fresh_seconds: float,
        stale_seconds: float,
        *,
        renewals: int = 2,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fresh_seconds = fresh_seconds
        self.stale_seconds = stale_seconds
        self._monotonic = monotonic
        # value: (fresh until, result); the cache drops an entry once its stale window has passed too.
        self._entries: TLRUCache[SearchKey, tuple[float, V]] = TLRUCache(
            self.MAX_ENTRIES, ttu=lambda _k, value, _now: value[0] + stale_seconds, timer=monotonic
        )
        self._running: dict[SearchKey, asyncio.Future[V]] = {}
        self._renewal_slots = asyncio.Semaphore(renewals)
        self._generations: dict[int, int] = {}
        # account → [(generation, prefixes of the words it touched, or None for all)], newest last
        self._changes: dict[int, list[tuple[int, frozenset[str] | None]]] = {}

    @staticmethod
    def _prefixes(words: frozenset[str] | None) -> frozenset[str] | None:
        """Every prefix of ``words``: the query terms that match them (searches match terms as prefixes)."""
        if words is None:
            return None
        return frozenset(word[:end] for word in words for end in range(1, min(len(word), 64) + 1))

    @staticmethod
    def _affects(prefixes: frozenset[str] | None, terms: tuple[str, ...]) -> bool:
        """True when a change whose words have ``prefixes`` can change a search for ``terms``."""
        return prefixes is None or any(term in prefixes for term in terms)

    def invalidate(self, account_id: int, words: frozenset[str] | None = None, *, renew: bool = False) -> None:
        """Forget the account's cached results that a change to assets with ``words`` can change (all of them
        when ``words`` is None). Call after its library changed.

        ``renew`` (with ``stale_seconds``) expires them instead: the next lookup starts a renewal and, until
        that search ends, still answers the old result. For background changes (finished jobs): a broad search
        over a large library takes tens of milliseconds, and a burst of tool calls would otherwise all wait for
        it at every finished job. A person's own change (an upload) is forgotten, so it shows at once."""
        generation = self._generations[account_id] = self._generations.get(account_id, 0) + 1
        prefixes = self._prefixes(words)
        changes = self._changes.setdefault(account_id, [])
        changes.append((generation, prefixes))
        del changes[: -self.MAX_CHANGES]
        now = self._monotonic()
        for key in [k for k in self._entries if k[0] == account_id and self._affects(prefixes, k[1])]:
            entry = self._entries.pop(key, None)
            if entry is not None and renew and self.stale_seconds > 0:
                self._entries[key] = (now, entry[1])

    def _changed_since(self, key: SearchKey, generation: int) -> bool:
        """True when an invalidation after ``generation`` affects ``key`` (or too many happened to tell)."""
        current = self._generations.get(key[0], 0)
        if current == generation:
            return False
        changes = [c for c in self._changes.get(key[0], []) if c[0] > generation]
        return len(changes) < current - generation or any(self._affects(w, key[1]) for _, w in changes)

    async def get(self, key: SearchKey, search: Callable[[], Awaitable[V]]) -> V:
        """The cached value of ``key``, else ``await search()`` (shared by concurrent callers)."""
        try:
            cached = self._entries[key]  # subscription: Mapping.get would consult the timer twice
        except KeyError:
            cached = None
        if cached is not None:
            if self._monotonic() < cached[0]:
                return cached[1]
            if key not in self._running:
                self._start(key, search, renewal=True)
            return cached[1]
        running = self._running.get(key) or self._start(key, search, renewal=False)
        return await asyncio.shield(running)

    def _start(self, key: SearchKey, search: Callable[[], Awaitable[V]], *, renewal: bool) -> asyncio.Future[V]:
        running = asyncio.ensure_future(self._search_and_keep(key, search, renewal))
        self._running[key] = running
        running.add_done_callback(functools.partial(self._done, key, renewal))
        return running

    def _done(self, key: SearchKey, renewal: bool, done: asyncio.Future[V]) -> None:
        self._running.pop(key, None)
        if renewal and not done.cancelled() and done.exception() is not None:
            # Nobody awaits a renewal: the old value stays until its stale window ends.
            log.warning("renewing the cached search %r failed: %r", key, done.exception())

    async def _search_and_keep(self, key: SearchKey, search: Callable[[], Awaitable[V]], renewal: bool) -> V:
        generation = self._generations.get(key[0], 0)
        async with self._renewal_slots if renewal else contextlib.nullcontext():
            value = await search()
        if self.fresh_seconds > 0 and not self._changed_since(key, generation):
            fresh_until = self._monotonic() + self.fresh_seconds * (1 - 0.2 * random.random())
            self._entries[key] = (fresh_until, value)
        return value
