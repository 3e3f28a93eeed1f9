"""Live events for call gallery viewers (WebSocket protocol version 1).

Every message is a JSON object with ``"v": 1`` and a ``"type"``: ``history``, ``generation_started``,
``image_generated``, ``image_from_library``, ``generation_failed``. Media goes by URL, never by bytes.
A broadcast is serialised once for every subscriber; each subscriber has a bounded queue, and one that falls
behind is marked ``overflowed`` and dropped by its connection instead of stalling the others.

``LocalEventHub`` serves one process; ``core.providers.redis.RedisBus`` carries the same events between
replicas (``EventHub`` is what both offer). ``Broadcast`` tells the other replicas what changed, so they forget
what they cached about it (API keys, library searches).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

PROTOCOL_VERSION = 1
CLOSED = ""  # queued for a dropped subscriber; a serialised event is never empty


def channel(account_id: int, conversation_id: str) -> str:
    """The event channel of one conversation of one account."""
    return f"{account_id}:{conversation_id}"


class Subscription:
    """One viewer's feed: ``await get()`` returns the next serialised event."""

    def __init__(self, key: str, queue_size: int) -> None:
        self.key = key
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self.overflowed = False

    async def get(self) -> str:
        """The next event (waits); ``CLOSED`` once the subscription is closed."""
        return await self.queue.get()


def serialize(event: dict[str, Any]) -> str:
    """One event as the JSON text every viewer receives (protocol version added)."""
    return json.dumps({"v": PROTOCOL_VERSION, **event}, separators=(",", ":"))


class EventHub(Protocol):
    """Viewer events keyed by ``channel(account_id, conversation_id)``."""

    #: True when events also reach other processes (then ``viewers`` counts this process's only).
    shared: bool

    async def open(self, key: str) -> Subscription:
        """A new subscription to ``key``'s events, in every process that publishes them once this returns."""
        ...

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering events to ``sub``."""
        ...

    def viewers(self, key: str | None = None) -> int:
        """Subscribers of one channel, or of all channels, in this process."""
        ...

    def publish(self, key: str, event: dict[str, Any]) -> int:
        """Send ``event`` to ``key``'s subscribers; returns how many in this process got it."""
        ...


class Broadcast(Protocol):
    """Messages to the other processes of a deployment (``topic`` → JSON-ready ``payload``), not to this one."""

    def send(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for every other process listening to ``topic`` (best effort, in order)."""
        ...

    def on(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler(payload)`` for each message of ``topic`` another process sends."""
        ...


class LocalBroadcast:
    """One process: nobody else to tell."""

    def send(self, topic: str, payload: dict[str, Any]) -> None:
        """Nothing to do: this process already acted on the change."""

    def on(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Nothing will arrive."""


class LocalEventHub:
    """In-process publish/subscribe keyed by ``channel(account_id, conversation_id)``."""

    shared = False

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

    async def open(self, key: str) -> Subscription:
        """``subscribe``, as ``EventHub`` asks."""
        return self.subscribe(key)

    def subscribe(self, key: str) -> Subscription:
        """A new subscription to ``key``'s events (a bounded queue; see ``LocalEventHub``)."""
        sub = Subscription(key, self.queue_size)
        self._subscribers[key].add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering ``key``'s events to ``subscription``."""
        subs = self._subscribers.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[sub.key]

    def viewers(self, key: str | None = None) -> int:
        """Subscribers of one channel, or of all channels."""
        if key is not None:
            return len(self._subscribers.get(key, ()))
        return sum(len(s) for s in self._subscribers.values())

    def _drop(self, sub: Subscription) -> None:
        """Stop feeding a subscriber that fell behind: empty its queue and leave the close sentinel ``""``."""
        sub.overflowed = True
        self.unsubscribe(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(CLOSED)

    def publish(self, key: str, event: dict[str, Any]) -> int:
        """Serialise ``event`` once and queue it for every subscriber of ``key``; returns how many got it.

        A subscriber whose queue is full is dropped: it receives ``CLOSED`` and its connection closes."""
        if not self._subscribers.get(key):
            return 0
        return self.deliver(key, serialize(event))

    def deliver(self, key: str, data: str) -> int:
        """Queue one serialised event (``serialize``) for every subscriber of ``key``; how many got it."""
        subs = self._subscribers.get(key)
        if not subs:
            return 0
        delivered = 0
        for sub in list(subs):
            try:
                sub.queue.put_nowait(data)
                delivered += 1
            except asyncio.QueueFull:
                self._drop(sub)
        return delivered
