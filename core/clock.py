"""Injectable time source (tests move time forward without sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, an aware UTC ``datetime``."""
        ...


class SystemClock:
    def now(self) -> datetime:
        """The current time, an aware UTC ``datetime``."""
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to (``advance(seconds=…)``)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC)

    def now(self) -> datetime:
        """The current time, an aware UTC ``datetime``."""
        return self._now

    def advance(self, **delta: float) -> None:
        """Move the clock forward by ``timedelta`` keyword arguments (``seconds=…``, ``hours=…``)."""
        self._now += timedelta(**delta)
