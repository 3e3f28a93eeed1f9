"""Live events for call gallery viewers (WebSocket protocol version 1).

Every message is a JSON object with ``"v": 1`` and a ``"type"``: ``history``, ``generation_started``,
``image_generated``, ``image_from_library``, ``generation_failed``. Media goes by URL, never by bytes.
A broadcast is serialised once for every subscriber; each subscriber has a bounded queue, and one that falls
behind is marked ``overflowed`` and dropped by its connection instead of stalling the others.

``LocalEventHub`` serves one process. Several replicas need a shared bus (Redis pub/sub) with the same
``publish`` / ``subscribe`` methods.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

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


class LocalEventHub:
    """In-process publish/subscribe keyed by ``channel(account_id, conversation_id)``."""

    def __init__(self, queue_size: int = 256) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)

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
        subs = self._subscribers.get(key)
        if not subs:
            return 0
        data = json.dumps({"v": PROTOCOL_VERSION, **event}, separators=(",", ":"))
        delivered = 0
        for sub in list(subs):
            try:
                sub.queue.put_nowait(data)
                delivered += 1
            except asyncio.QueueFull:
                self._drop(sub)
        return delivered
