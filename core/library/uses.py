"""Asset uses (agent shows, posts, downloads, views), counted in memory and written in batches."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from core.clock import Clock
from core.errors import InvalidRequest
from storage.repositories.assets import AssetRepository

log = logging.getLogger(__name__)

USE_KINDS = ("agent", "post", "download", "view")

_UseGroup = tuple[int, int, str, str | None, str | None]  # asset, account, kind, actor, conversation


class UseRecorder:
    """Asset uses written in batches: one transaction per ``interval`` seconds instead of one per use.

    Tool calls on the hot path (``show_product_image``) only count in memory, one entry per (asset, account,
    kind, actor, conversation) with the number of uses and the latest time; ``run()`` writes them in the
    background and ``flush()`` writes what is pending (also called at shutdown, so nothing is lost on a clean
    stop; a crash loses at most ``interval`` seconds of use counts, never money). Each entry becomes one
    ``asset_uses`` row carrying the count: an agent showing the same product again and again costs one row
    per interval."""

    def __init__(self, repository: AssetRepository, clock: Clock, interval: float = 1.0) -> None:
        self.repository = repository
        self.clock = clock
        self.interval = interval
        self._pending: dict[_UseGroup, list[Any]] = {}  # group -> [count, latest time]
        self._pending_uses = 0

    @property
    def pending(self) -> int:
        """Uses counted but not written yet."""
        return self._pending_uses

    def add(
        self, account_id: int, asset_id: int, kind: str, *, actor: str | None = None, conversation_id: str | None = None
    ) -> None:
        """Count one use (``kind`` one of ``USE_KINDS``, else ``InvalidRequest`` naming ``kind``)."""
        if kind not in USE_KINDS:
            raise InvalidRequest(f"use kind must be one of {', '.join(USE_KINDS)}", field="kind")
        group = (asset_id, account_id, kind, actor, conversation_id)
        entry = self._pending.get(group)
        if entry is None:
            self._pending[group] = [1, self.clock.now()]
        else:
            entry[0] += 1
            entry[1] = self.clock.now()
        self._pending_uses += 1

    async def flush(self, chunk: int = 2000) -> int:
        """Write the uses pending now, at most ``chunk`` rows per transaction; returns how many uses were
        pending (those of assets deleted meanwhile are dropped). Uses added meanwhile wait for the next flush
        (looping until none are left would, under load, write continuously in tiny batches).

        Raises:
            sqlalchemy.exc.DBAPIError: a write failed; its uses and the rest stay pending for the next flush.
        """
        groups = list(self._pending.items())
        written = self._pending_uses
        self._pending, self._pending_uses = {}, 0
        for start in range(0, len(groups), chunk):
            rows: list[dict[str, Any]] = []
            counts: dict[tuple[int, bool], int] = {}
            for (asset_id, account_id, kind, actor, conversation_id), (count, at) in groups[start : start + chunk]:
                rows.append(
                    {
                        "asset_id": asset_id,
                        "account_id": account_id,
                        "kind": kind,
                        "actor": actor,
                        "conversation_id": conversation_id,
                        "created_at": at,
                        "count": count,
                    }
                )
                key = (asset_id, kind == "view")
                counts[key] = counts.get(key, 0) + count
            try:
                await self.repository.write_uses(rows, counts)
            except Exception:
                # Kept for the next flush (a locked or briefly unreachable database). Not on cancellation: the
                # writer may still commit the batch, and counting it twice is worse than a lost count.
                self._restore(groups[start:])
                raise
        return written

    def _restore(self, groups: list[tuple[_UseGroup, list[Any]]]) -> None:
        for group, (count, at) in groups:
            entry = self._pending.setdefault(group, [0, at])
            entry[0] += count
            entry[1] = max(entry[1], at)
            self._pending_uses += count

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing asset uses failed")
