"""Repositories: the only SQL of showme. One module per aggregate; each returns ``storage.records``.

Writes that run as one transaction of their own go through ``Database.run_write`` (batched in the writer
process, ``storage.writer``, where the database allows); the functions those writes are made of are
module-level functions of a SQLAlchemy ``Connection``, so a caller's transaction (``Database.write()``) can run
the same ones (``in_session``). Callers outside ``storage`` never see a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


def dialect_insert(conn: Connection | AsyncSession) -> Any:
    """The dialect's ``insert`` (both offer ``on_conflict_do_nothing``)."""
    name = conn.dialect.name if isinstance(conn, Connection) else conn.get_bind().dialect.name
    return postgresql.insert if name == "postgresql" else sqlite.insert


async def in_session(session: AsyncSession, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(connection, *args, **kwargs)`` on the connection of ``session``'s open transaction."""
    return await session.run_sync(lambda sync: fn(sync.connection(), *args, **kwargs))
