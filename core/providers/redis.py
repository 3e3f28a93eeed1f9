"""Redis between replicas (redis-py's asyncio client): viewer events and cache invalidations over pub/sub.

Channels (each name starts with ``redis.key_prefix``):

- ``ev:<account id>:<conversation id>``: the viewer events of one conversation. A replica subscribes to it while
  one of its viewers watches that conversation, so an event travels only to replicas that show it.
- ``bus``: invalidations (``Broadcast``): an API key revoked, a library changed.

A message is ``<origin>\\n<key or topic>\\n<body>``: ``origin`` is the sending process's id, and a process skips
its own messages (it delivered its events to its own viewers already, and acted on its own changes). ``body``
is the serialised event viewers receive, or a JSON payload. Replay on connect does not come from Redis: a
conversation's history is rebuilt from the database (``core.gallery``), so it survives any replica's restart.

Publishing never waits on Redis: messages queue in this process and one task sends them, pipelined, in the
order they were published. When Redis is unreachable they are dropped (counted) rather than piling up, and
the listener reconnects and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.events import LocalEventHub, Subscription, serialize

log = logging.getLogger(__name__)

#: Messages waiting to be sent; past this (Redis unreachable for long) new ones are dropped.
OUTBOX_LIMIT = 10_000
_RECONNECT_SECONDS = 1.0


class RedisBus:
    """``EventHub`` and ``Broadcast`` across processes through Redis pub/sub.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS).
        prefix: the start of every channel name (``redis.key_prefix``).
        queue_size: events buffered per viewer before dropping it (``LocalEventHub``).

    Call ``start`` on the running loop before use and ``close`` at the end.
    """

    shared = True

    def __init__(self, url: str, prefix: str, queue_size: int = 256) -> None:
        self.redis = aioredis.from_url(url, health_check_interval=30)
        self.prefix = prefix
        self.local = LocalEventHub(queue_size)
        self.origin = uuid.uuid4().hex
        self.dropped = 0  # messages not sent because Redis was unreachable
        self._bus = f"{prefix}bus"
        self._pubsub = self.redis.pubsub()
        self._channels: set[str] = set()  # event channels this process is subscribed to
        self._subscribing = asyncio.Lock()
        self._handlers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self._outbox: asyncio.Queue[tuple[str, str]] = asyncio.Queue(OUTBOX_LIMIT)
        self._tasks: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    # lifecycle

    async def start(self) -> None:
        """Subscribe to the bus channel and start the sender and the listener.

        Raises ``redis.exceptions.ConnectionError`` when Redis does not answer (the server does not start)."""
        await self.ping()
        await self._pubsub.subscribe(self._bus)
        for coro, name in ((self._send_loop(), "redis-sender"), (self._listen_loop(), "redis-listener")):
            task = asyncio.create_task(coro, name=name)
            self._tasks.add(task)
        self.connected.set()

    async def close(self) -> None:
        """Send what is queued (at most a second), stop both tasks and close the connections."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self._outbox.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]  # untyped in redis-py 7
        await self.redis.aclose()

    async def ping(self) -> None:
        """Raise the client's error when Redis does not answer."""
        pong: Any = self.redis.ping()  # redis-py 7 types it for its sync and asyncio clients at once
        await pong

    # EventHub

    def _event_channel(self, key: str) -> str:
        return f"{self.prefix}ev:{key}"

    async def open(self, key: str) -> Subscription:
        """A subscription to ``key``'s events from every replica: this process subscribes to the conversation's
        channel first, if none of its viewers watched it yet."""
        sub = self.local.subscribe(key)
        channel = self._event_channel(key)
        async with self._subscribing:
            if channel not in self._channels:
                try:
                    await self._pubsub.subscribe(channel)
                except (RedisError, OSError):
                    self.local.unsubscribe(sub)
                    raise
                self._channels.add(channel)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop feeding ``sub``; the process leaves the channel once its last viewer of it has gone."""
        self.local.unsubscribe(sub)
        if not self.local.viewers(sub.key):
            task = asyncio.get_running_loop().create_task(self._leave(sub.key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _leave(self, key: str) -> None:
        channel = self._event_channel(key)
        async with self._subscribing:
            if self.local.viewers(key) or channel not in self._channels:
                return  # a viewer came back meanwhile
            self._channels.discard(channel)
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    def viewers(self, key: str | None = None) -> int:
        """Viewers connected to this process (of one channel, or all)."""
        return self.local.viewers(key)

    def publish(self, key: str, event: dict[str, Any]) -> int:
        """Deliver ``event`` to this process's viewers of ``key`` now and send it to the other replicas;
        returns how many viewers of this process got it."""
        data = serialize(event)
        self._queue(self._event_channel(key), f"{self.origin}\n{key}\n{data}")
        return self.local.deliver(key, data)

    # Broadcast

    def send(self, topic: str, payload: dict[str, Any]) -> None:
        """Queue ``payload`` for the other processes' handlers of ``topic``."""
        self._queue(self._bus, f"{self.origin}\n{topic}\n{json.dumps(payload, separators=(',', ':'))}")

    def on(self, topic: str, handler: Callable[[dict[str, Any]], None]) -> None:
        """Call ``handler(payload)`` for each ``topic`` message of another process."""
        self._handlers[topic].append(handler)

    # the two tasks

    def _queue(self, channel: str, message: str) -> None:
        try:
            self._outbox.put_nowait((channel, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def _send_loop(self) -> None:
        """Send queued messages in order, as many as are waiting in one pipeline."""
        while True:
            batch = [await self._outbox.get()]
            while not self._outbox.empty() and len(batch) < 512:
                batch.append(self._outbox.get_nowait())
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for channel, message in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as err:
                self.dropped += len(batch)
                log.warning("could not publish %d message(s) to Redis: %s", len(batch), err)
                await asyncio.sleep(_RECONNECT_SECONDS)
            finally:
                for _ in batch:
                    self._outbox.task_done()

    async def _listen_loop(self) -> None:
        """Dispatch messages of other processes; after a lost connection, reconnect (redis-py subscribes the
        channels again)."""
        while True:
            try:
                async for message in self._pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["channel"], message["data"])
            except (RedisError, OSError) as err:
                self.connected.clear()
                log.warning("lost the Redis subscription, reconnecting: %s", err)
                await asyncio.sleep(_RECONNECT_SECONDS)
                with contextlib.suppress(RedisError, OSError):
                    await self._pubsub.ping()
                    self.connected.set()

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        text = data.decode() if isinstance(data, bytes) else data
        origin, _, rest = text.partition("\n")
        if origin == self.origin:
            return
        name, _, body = rest.partition("\n")
        channel_name = channel.decode() if isinstance(channel, bytes) else channel
        if channel_name != self._bus:
            self.local.deliver(name, body)
            return
        try:
            payload = json.loads(body)
        except json.JSONDecodeError:
            log.warning("ignored a malformed %s message on %s", name, channel_name)
            return
        for handler in self._handlers.get(name, ()):
            try:
                handler(payload)
            except Exception:
                log.exception("handler of %s messages failed", name)
