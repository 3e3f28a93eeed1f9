"""Group commit: the wire format between ``Database.run_write`` and the writer process, and how a batch runs.

Frames on the writer's socket: a 4-byte big-endian length, then a pickle. Parent → writer: first the database
URL (UTF-8), then lists of operations (one batch each); writer → parent: a list of ``(value, exception)``
outcomes, one per operation in order, or a single exception when the batch as a whole failed (nothing of it
was written).
"""

from __future__ import annotations

import pickle
import socket
import struct
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

WriteOp = Callable[[Connection], Any]
Outcome = tuple[Any, BaseException | None]

LENGTH = struct.Struct(">I")

#: ``Connection.info`` key under which the writer process numbers its batches (1, 2, …).
BATCH_NUMBER = "showme.batch"

#: ``Connection.info`` key of a dict that lives for one batch transaction run without SAVEPOINTs (absent
#: otherwise): its operations may note there what their transaction already holds, such as an account's row
#: lock, to skip taking it again. Sound because such a transaction is all or nothing: when any operation
#: raises, all of it is rolled back and the batch runs again with a SAVEPOINT around each operation and
#: without this dict (``run_batch``).
TRANSACTION_CACHE = "showme.transaction"


def send_frame(sock: socket.socket, data: bytes) -> None:
    """Write one frame (blocking)."""
    sock.sendall(LENGTH.pack(len(data)) + data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> bytes | None:
    """The next frame's bytes (blocking); None when the other end has closed the socket."""
    header = _recv_exactly(sock, LENGTH.size)
    return None if header is None else _recv_exactly(sock, LENGTH.unpack(header)[0])


def run_batch(conn: Connection, ops: list[WriteOp]) -> list[Outcome]:
    """Run every op in one transaction on ``conn``; raises when the transaction itself fails (nothing written).

    First without SAVEPOINTs: when every op succeeds, as in a burst of jobs, that is the whole story. When one
    raises, the transaction is rolled back and the batch runs again with a SAVEPOINT around each op, so only
    the failing ones are undone. An op may therefore run twice and must have no effect outside the
    connection. Only the first run has a ``TRANSACTION_CACHE``.
    """
    try:
        conn.info[TRANSACTION_CACHE] = {}
        with conn.begin():
            values = [op(conn) for op in ops]
        return [(value, None) for value in values]
    except Exception as err:
        if len(ops) == 1:
            return [(None, err)]
    finally:
        conn.info.pop(TRANSACTION_CACHE, None)
    outcomes: list[Outcome] = []
    with conn.begin():
        for op in ops:
            try:
                with conn.begin_nested():
                    outcomes.append((op(conn), None))
            except Exception as err:
                outcomes.append((None, err))
    return outcomes


def picklable_error(err: BaseException) -> BaseException:
    """``err`` when it pickles, else a ``RuntimeError`` that says what it was."""
    try:
        pickle.dumps(err, pickle.HIGHEST_PROTOCOL)
        return err
    except Exception:
        return RuntimeError(f"the write failed: {type(err).__name__}: {err}")


def dump_outcomes(outcomes: list[Outcome]) -> bytes:
    """The outcomes as one pickle; a value or exception that does not pickle becomes an error of its own."""
    try:
        return pickle.dumps(outcomes, pickle.HIGHEST_PROTOCOL)
    except Exception:
        safe: list[Outcome] = []
        for value, error in outcomes:
            try:
                pickle.dumps((value, error), pickle.HIGHEST_PROTOCOL)
                safe.append((value, error))
            except Exception as err:
                what = f"{type(error).__name__}: {error}" if error is not None else type(value).__name__
                safe.append((None, TypeError(f"the write's outcome cannot be sent back ({what}): {err}")))
        return pickle.dumps(safe, pickle.HIGHEST_PROTOCOL)
