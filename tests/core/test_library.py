from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from core.library import Library
from storage.models import Asset, AssetUse
from tools.services import Services


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (30, 20), color).save(out, format="PNG")
    return out.getvalue()


async def test_search_cache_sees_new_assets_at_once(services: Services) -> None:
    account = (await services.accounts.create("Acme")).id
    assert services.library.cache_seconds == 30
    assert await services.library.search(account, "emerald quartz") == []  # cached: nothing
    asset, created = await services.library.import_image(
        account, _png((0, 90, 40)), name="Emerald Quartz", tags=["quartz", "green"]
    )
    assert created
    assert [h.asset.id for h in await services.library.search(account, "emerald quartz")] == [asset.id]
    again, created = await services.library.import_image(
        account, _png((0, 90, 40)), name="Emerald Pearl", tags="quartz"
    )
    assert not created and again.id == asset.id
    assert [h.asset.name for h in await services.library.search(account, "pearl")] == ["Emerald Pearl"]


async def test_expired_search_answers_at_once_while_one_background_search_renews_it(services: Services) -> None:
    """Another process's change (here a second ``Library`` on the same database, as a CLI import is) shows once
    the cached result expires (after 80-100 % of ``cache_seconds``). Within ``stale_seconds`` after that, searches
    answer with the old result at once while exactly one background search renews it; past the stale window a
    search waits for a new one."""
    now = [1000.0]
    library = Library(
        services.store.assets,
        services.blobs,
        services.settings.media_base_url,
        services.clock,
        cache_seconds=30,
        stale_seconds=30,
        monotonic=lambda: now[0],
    )
    other = services.library  # its imports do not clear `library`'s cache
    searches: list[str] = []

    def count_searches(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "assets_fts" in statement or "ts_rank_cd" in statement:
            searches.append(statement)

    event.listen(services.db.engine.sync_engine, "before_cursor_execute", count_searches)
    try:
        account = (await services.accounts.create("Acme")).id
        await other.import_image(account, _png((0, 90, 40)), name="Emerald Quartz", tags=["quartz"])

        async def names() -> list[str]:
            return sorted(h.asset.name for h in await library.search(account, "quartz"))

        assert await names() == ["Emerald Quartz"] and len(searches) == 1
        await other.import_image(account, _png((200, 200, 190)), name="Pearl Quartz", tags=["quartz"])
        now[0] += 23.9  # before the earliest expiry: cached
        assert await names() == ["Emerald Quartz"] and len(searches) == 1
        now[0] += 6.2  # expired, within the stale window
        answers = [await names() for _ in range(5)]  # no waiting: the old result, one refresh started
        assert answers == [["Emerald Quartz"]] * 5
        for _ in range(500):
            if await names() == ["Emerald Quartz", "Pearl Quartz"]:
                break
            await asyncio.sleep(0.01)
        assert await names() == ["Emerald Quartz", "Pearl Quartz"]
        assert len(searches) == 2  # one background search for all those calls
        await other.import_image(account, _png((10, 10, 10)), name="Black Quartz", tags=["quartz"])
        now[0] += 60.1  # past expiry and stale window: this search waits for a new one
        assert await names() == ["Black Quartz", "Emerald Quartz", "Pearl Quartz"] and len(searches) == 3
    finally:
        event.remove(services.db.engine.sync_engine, "before_cursor_execute", count_searches)


async def test_search_ranks_name_and_tags_over_description(services: Services) -> None:
    account = (await services.accounts.create("Acme")).id
    described, _ = await services.library.import_image(
        account, _png((1, 1, 1)), name="Absolute Black", description="looks like black galaxy at night"
    )
    named, _ = await services.library.import_image(
        account, _png((2, 2, 2)), name="Black Galaxy Granite", tags=["granite"]
    )
    hits = await services.library.search(account, "black galaxy granite")
    assert [h.asset.id for h in hits] == [named.id, described.id]


async def _use_rows(services: Services) -> list[tuple[int, str, str | None, int]]:
    async with services.db.read() as session:
        rows = await session.execute(
            select(AssetUse.asset_id, AssetUse.kind, AssetUse.conversation_id, AssetUse.count).order_by(AssetUse.id)
        )
        return [tuple(r) for r in rows]


async def _counters(services: Services, asset_id: int) -> tuple[int, int]:
    async with services.db.read() as session:
        row = (await session.execute(select(Asset.use_count, Asset.view_count).where(Asset.id == asset_id))).one()
        return row.use_count, row.view_count


async def test_uses_are_counted_in_memory_and_written_one_row_per_group(services: Services) -> None:
    account = (await services.accounts.create("Acme")).id
    granite, _ = await services.library.import_image(account, _png((5, 5, 5)), name="Black Granite")
    marble, _ = await services.library.import_image(account, _png((250, 250, 250)), name="White Marble")
    uses = services.uses
    for _ in range(500):
        uses.add(account, granite.id, "agent", actor="vapi", conversation_id="call_1")
    uses.add(account, granite.id, "view", conversation_id="call_1")
    uses.add(account, marble.id, "agent", actor="vapi", conversation_id="call_2")
    assert uses.pending == 502
    assert await uses.flush() == 502 and uses.pending == 0
    assert await _use_rows(services) == [
        (granite.id, "agent", "call_1", 500),
        (granite.id, "view", "call_1", 1),
        (marble.id, "agent", "call_2", 1),
    ]
    assert await _counters(services, granite.id) == (500, 1)
    assert await _counters(services, marble.id) == (1, 0)
    assert await uses.flush() == 0  # nothing pending, nothing written


async def test_a_failed_use_write_is_kept_for_the_next_flush(services: Services) -> None:
    account = (await services.accounts.create("Acme")).id
    granite, _ = await services.library.import_image(account, _png((5, 5, 5)), name="Black Granite")
    uses = services.uses
    for _ in range(3):
        uses.add(account, granite.id, "agent", conversation_id="call_1")
    uses.add(account, granite.id + 1000, "agent", conversation_id="call_1")  # no such asset: dropped, not fatal
    # A real failure: the table is briefly gone (as if the database were being migrated or unreachable).
    async with services.db.write() as session:
        await session.execute(text("ALTER TABLE asset_uses RENAME TO asset_uses_away"))
    with pytest.raises(DBAPIError):
        await uses.flush()
    assert uses.pending == 4
    uses.add(account, granite.id, "agent", conversation_id="call_1")
    async with services.db.write() as session:
        await session.execute(text("ALTER TABLE asset_uses_away RENAME TO asset_uses"))
    assert await uses.flush() == 5
    assert await _use_rows(services) == [(granite.id, "agent", "call_1", 4)]
    assert await _counters(services, granite.id) == (4, 0)
