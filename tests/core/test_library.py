from __future__ import annotations

import io

from PIL import Image

from core.services import Services


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
