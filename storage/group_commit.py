"""The client side of the writer process (``storage.writer``): queues write operations, sends them in batches
that commit together, and hands each caller its outcome. Private to ``storage``: ``Database.run_write`` is
the only caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import subprocess
import sys
from collections import deque
from typing import Any

from storage.batch import LENGTH, Outcome, send_frame

log = logging.getLogger(__name__)

#: Imported by a new writer process while its parent goes on (the modules whose write operations it will
#: unpickle), so that the first write does not wait for them.
WRITER_PRELOAD = ("storage.repositories.jobs", "storage.repositories.assets")

_Pending = tuple[bytes, "asyncio.Future[Any]", int | None]


class WriterStopped(RuntimeError):
    """The writer process ended (it was killed, or it crashed) while running a batch. Whether that batch
    committed is unknown; the next batch starts a new writer process."""


def _start_writer_process(url: str, echo: bool) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start ``python -m storage.writer`` on one end of a new socket pair and send it ``url`` as the first
    frame (a command line would show a password to every user of the machine); return it and our end. It
    exits when our end closes (also when this process dies)."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-m", "storage.writer", "--fd", str(theirs.fileno())]
    command += [f"--preload={','.join(WRITER_PRELOAD)}", *(["--echo"] if echo else [])]
    try:
        process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        send_frame(ours, url.encode())
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def _deliver(futures: list[asyncio.Future[Any]], reply: list[Outcome] | BaseException) -> None:
    """Resolve each future with its outcome, or all of them with the exception that failed the batch. A
    future already done belongs to a cancelled caller; its operation committed all the same."""
    if isinstance(reply, BaseException):
        reply = [(None, reply)] * len(futures)
    for future, (value, error) in zip(futures, reply, strict=True):
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class WriterClient:
    """Batches of pickled operations to one writer process, started on demand and again after it died.

    ``max_batch`` operations per transaction at most: every caller of a batch waits for all of it, so small
    batches let a burst flow through in waves. SQLite has one batch in flight; PostgreSQL up to
    ``max_in_flight``, and a PostgreSQL batch holds one account's operations only (``_next_batch``), so two
    replicas never take two accounts' locks in crossed order.
    """

    max_batch = 8
    max_in_flight = 2

    def __init__(self, url: str, *, sqlite: bool, echo: bool, lock: asyncio.Lock | None) -> None:
        self._url = url
        self._sqlite = sqlite
        self._echo = echo
        self._lock = lock  # SQLite: this process's write lock, let go after each batch
        self._process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._pending: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs."""
        return self._process.pid if self._process is not None else None

    def submit(self, data: bytes, account: int | None) -> asyncio.Future[Any]:
        """Queue one pickled operation; the future gets its value or exception once its batch has run."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future, account))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        return future

    def start(self) -> None:
        """Start the writer process now rather than at the first write (it takes about half a second to
        import what it needs); nothing to do while one runs."""
        if self._process is None:
            self._process, self._sock = _start_writer_process(self._url, self._echo)

    async def close(self) -> None:
        """Wait for the queued batches, then stop the process."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._stop()

    async def _socket(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._stream is not None and not self._stream[1].is_closing():
            return self._stream
        if self._stream is not None or (self._process and self._process.poll() is not None):
            await self._stop()
        self.start()
        sock, self._sock = self._sock, None
        assert sock is not None
        self._stream = await asyncio.open_unix_connection(sock=sock, limit=1 << 24)
        return self._stream

    async def _stop(self) -> None:
        """Close the socket (the writer exits at end of input) and wait for the process."""
        stream, sock, process = self._stream, self._sock, self._process
        self._stream = self._sock = self._process = None
        if sock is not None:
            sock.close()
        if stream is not None:
            stream[1].close()
            with contextlib.suppress(Exception):
                await stream[1].wait_closed()
        if process is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, process.wait, 10)
            except subprocess.TimeoutExpired:  # pragma: no cover - only when the writer hangs
                log.error("the writer process did not stop; killing it")
                process.kill()
                await loop.run_in_executor(None, process.wait)

    def _next_batch(self) -> list[_Pending]:
        """The next batch in arrival order: on SQLite the next ``max_batch`` operations; on PostgreSQL the next
        one and, when it names its account, the following ones of the same account."""
        pending = self._pending
        if self._sqlite:
            return [pending.popleft() for _ in range(min(self.max_batch, len(pending)))]
        batch = [pending.popleft()]
        account = batch[0][2]
        if account is not None:
            others = []
            while pending and len(batch) < self.max_batch:
                item = pending.popleft()
                if item[2] is None:  # it may touch this account too: nothing jumps ahead of it
                    others.append(item)
                    break
                (batch if item[2] == account else others).append(item)
            pending.extendleft(reversed(others))
        return batch

    async def _flush_pending(self) -> None:
        while self._pending:
            async with self._lock or contextlib.nullcontext():
                await self._send_batches()

    async def _send_batches(self) -> None:
        """Send pending batches and deliver their outcomes until none is unanswered. PostgreSQL sends the next
        batch before reading a reply (up to ``max_in_flight``), so the writer finds it waiting."""
        limit = 1 if self._sqlite else self.max_in_flight
        in_flight: deque[list[asyncio.Future[Any]]] = deque()
        try:
            reader, writer = await self._socket()
        except Exception as err:  # the process cannot start: fail one batch, and try again for the next
            _deliver([future for _, future, _ in self._next_batch()], err)
            return
        try:
            while True:
                while self._pending and len(in_flight) < limit:
                    batch = self._next_batch()
                    in_flight.append([future for _, future, _ in batch])
                    payload = pickle.dumps([data for data, _, _ in batch], pickle.HIGHEST_PROTOCOL)
                    writer.write(LENGTH.pack(len(payload)) + payload)
                if not in_flight:
                    return
                header = await reader.readexactly(LENGTH.size)
                raw = await reader.readexactly(LENGTH.unpack(header)[0])
                try:
                    reply = pickle.loads(raw)
                except Exception as err:
                    reply = err
                _deliver(in_flight.popleft(), reply)
                if self._sqlite:
                    return
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            await self._stop()
            for futures in in_flight:
                _deliver(futures, WriterStopped(f"the writer process stopped during a write: {err!r}"))
        except BaseException:  # cancelled mid-reply: the stream is out of step; start afresh
            for futures in in_flight:
                _deliver(futures, WriterStopped("the write was interrupted (shutdown); it may have committed"))
            await asyncio.shield(self._stop())
            raise
