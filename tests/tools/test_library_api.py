"""The managed library over REST: filters, sorts and pages; changing, deleting, folders; recorded uses,
downloads and statistics that agree exactly with what was recorded; shares and members. On SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

from core.clock import ManualClock
from tests.tools.conftest import Server, form, png


async def upload(server: Server, color: tuple[int, int, int], **fields: str) -> dict[str, Any]:
    response = await server.client.post("/api/v1/library", headers=server.auth, data=form(png(color), **fields))
    assert response.status == 201, await response.text()
    return (await response.json())["asset"]


async def listing(server: Server, **params: Any) -> dict[str, Any]:
    query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()}
    response = await server.client.get("/api/v1/library", headers=server.auth, params=query)
    assert response.status == 200, await response.text()
    return await response.json()


def names(page: dict[str, Any]) -> list[str]:
    return [a["name"] for a in page["assets"]]


async def history(server: Server, conversation_id: str) -> list[dict[str, Any]]:
    """What a viewer opening the conversation's gallery now is shown first."""
    token, _ = server.services.viewer_tokens.mint(server.account_id, conversation_id)
    ws = await server.client.ws_connect(f"/ws/calls/{conversation_id}?token={token}")
    first = await ws.receive_json(timeout=5)
    await ws.close()
    assert first["type"] == "history"
    return first["items"]  # type: ignore[no-any-return]


async def patch(server: Server, asset_id: int, **changes: Any) -> Any:
    return await server.client.patch(f"/api/v1/library/{asset_id}", headers=server.auth, json=changes)


async def test_filters_sorts_and_pages(server: Server, clock: ManualClock) -> None:
    made = []
    rows = [("Black Galaxy Granite slab", "granite,black", "product"),
            ("Calacatta marble island", "marble, white", "marketing"),
            ("Spring promo: quartz 20% off", "Quartz,promo", "social"),
            ("Walnut shaker cabinets", "wood", None),
            ("granite kitchen for the Q3 deck", "granite", "presentation")]  # fmt: skip
    for i, (name, tags, category) in enumerate(rows):
        clock.advance(minutes=1)
        fields = {"name": name, "tags": tags} | ({"category": category} if category else {})
        made.append(await upload(server, (30 * i, 40, 50), **fields))
    assert names(await listing(server)) == [r[0] for r in reversed(rows)]  # newest first
    assert names(await listing(server, tag="granite")) == [rows[4][0], rows[0][0]]
    assert names(await listing(server, tag="QUARTZ")) == [rows[2][0]]  # tags are matched as stored: lower case
    assert names(await listing(server, category="social")) == [rows[2][0]]
    assert names(await listing(server, q="granite", category="product")) == [rows[0][0]]
    assert names(await listing(server, sort="name")) == sorted(r[0] for r in rows)

    response = await patch(server, made[3]["id"], favorite=True)
    assert (await response.json())["asset"]["favorite"] is True
    assert names(await listing(server, favorite=True)) == [rows[3][0]]
    assert names(await listing(server, favorite=False, kind="image", limit=100)) == [r[0] for r in reversed(rows)
                                                                                    if r is not rows[3]]  # fmt: skip

    seen: list[str] = []
    cursor = None
    while True:
        page = await listing(server, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += names(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r[0] for r in reversed(rows)]
    bad = await server.client.get("/api/v1/library", headers=server.auth, params={"cursor": "nonsense", "sort": "name"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "cursor"
    bad = await server.client.get("/api/v1/library", headers=server.auth, params={"category": "kitchen"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "category"
    bad = await server.client.get("/api/v1/library", headers=server.auth, params={"sort": "relevance"})
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "sort"


async def test_changing_an_asset_and_its_folder(server: Server) -> None:
    asset = await upload(server, (1, 2, 3), name="IMG_2231")
    created = await server.client.post("/api/v1/library/folders", headers=server.auth, json={"name": "Kitchens"})
    assert created.status == 201
    kitchens = (await created.json())["folder"]
    response = await patch(server, asset["id"], name="Black galaxy island", description="Polished, gold flecks",
                           tags=["Granite", "black ", "granite"], category="product", folder_id=kitchens["id"],
                           alt_text="A black granite kitchen island under pendant lights",
                           keywords="galaxy, countertop")  # fmt: skip
    assert response.status == 200, await response.text()
    changed = (await response.json())["asset"]
    assert changed["tags"] == ["granite", "black"] and changed["keywords"] == ["galaxy", "countertop"]
    assert changed["folder"] == "Kitchens" and changed["folder_id"] == kitchens["id"]
    assert changed["alt_text"].startswith("A black granite")
    # Keywords and alt text are searchable, by agents too.
    hits = await server.client.get("/api/v1/library/search", headers=server.auth, params={"q": "countertop"})
    assert [h["asset"]["id"] for h in (await hits.json())["results"]] == [asset["id"]]
    assert names(await listing(server, folder_id=kitchens["id"])) == ["Black galaxy island"]
    assert names(await listing(server, folder_id=0)) == []

    for changes, field in [({"category": "kitchen"}, "category"), ({"name": ""}, "name"), ({"colour": "red"}, "colour"),
                           ({"folder_id": 999999}, "folder_id")]:  # fmt: skip
        bad = await patch(server, asset["id"], **changes)
        assert bad.status == 400 and (await bad.json())["error"]["field"] == field, changes

    # Folders: nest, rename, move, refuse a cycle, delete only when empty.
    sub = await server.client.post("/api/v1/library/folders", headers=server.auth,
                                   json={"name": "Islands", "parent_id": kitchens["id"]})  # fmt: skip
    sub_id = (await sub.json())["folder"]["id"]
    cycle = await server.client.patch(f"/api/v1/library/folders/{kitchens['id']}", headers=server.auth,
                                      json={"parent_id": sub_id})  # fmt: skip
    assert cycle.status == 400 and (await cycle.json())["error"]["field"] == "parent_id"
    same = await server.client.post("/api/v1/library/folders", headers=server.auth, json={"name": "Kitchens"})
    assert same.status == 409
    renamed = await server.client.patch(f"/api/v1/library/folders/{sub_id}", headers=server.auth,
                                        json={"name": "Islands & peninsulas", "parent_id": None})  # fmt: skip
    assert (await renamed.json())["folder"] == {**(await renamed.json())["folder"], "parent_id": None}
    full = await server.client.delete(f"/api/v1/library/folders/{kitchens['id']}", headers=server.auth)
    assert full.status == 409
    await patch(server, asset["id"], folder_id=None)
    assert (await server.client.delete(f"/api/v1/library/folders/{kitchens['id']}", headers=server.auth)).status == 204
    folders = await (await server.client.get("/api/v1/library/folders", headers=server.auth)).json()
    assert [f["name"] for f in folders["folders"]] == ["Islands & peninsulas"]


async def test_a_deleted_asset_is_hidden_everywhere_and_its_file_goes_when_unreferenced(
    server: Server, clock: ManualClock
) -> None:
    asset = await upload(server, (9, 9, 9), name="Carrara marble", tags="marble")
    ws = await server.viewer("call_del")
    shown = await server.client.post("/tools/show_product_image", headers=server.auth,
                                     json={"query": "carrara marble", "conversation_id": "call_del"})  # fmt: skip
    assert (await shown.json())["status"] == "shown"
    await ws.close()
    assert (await server.client.delete(f"/api/v1/library/{asset['id']}", headers=server.auth)).status == 204
    assert (await server.client.delete(f"/api/v1/library/{asset['id']}", headers=server.auth)).status == 404
    assert (await server.client.get(f"/api/v1/library/{asset['id']}", headers=server.auth)).status == 404
    assert names(await listing(server)) == []
    search = await server.client.get("/api/v1/library/search", headers=server.auth, params={"q": "carrara"})
    assert (await search.json())["results"] == []
    tool = await server.client.post("/tools/show_product_image", headers=server.auth,
                                    json={"query": "carrara marble", "conversation_id": "call_del"})  # fmt: skip
    assert (await tool.json())["status"] == "not_found"

    blobs = server.services.blobs
    assert await blobs.exists(asset["blob_key"])  # kept a while: a request may still be serving it
    assert await server.services.manager.purge() == 0
    clock.advance(seconds=server.services.settings.webapp.purge_deleted_after_seconds + 1)
    # The same file uploaded again (a new asset) keeps the file and its thumbnail.
    again = await upload(server, (9, 9, 9), name="Carrara again")
    assert again["id"] != asset["id"] and again["blob_key"] == asset["blob_key"]
    assert await server.services.manager.purge() == 0
    await server.client.delete(f"/api/v1/library/{again['id']}", headers=server.auth)
    clock.advance(hours=1)
    assert await server.services.manager.purge() == 2  # the file and its thumbnail
    assert not await blobs.exists(asset["blob_key"]) and not await blobs.exists(asset["thumb_key"])
    # A generated picture deleted from the library leaves the gallery's history too.
    made = await server.client.post("/tools/generate_image", headers=server.auth,
                                    json={"prompt": "a white kitchen", "conversation_id": "call_del"})  # fmt: skip
    job = await server.client.get(f"/api/v1/generations/{(await made.json())['job_id']}", headers=server.auth)
    generated = (await job.json())["job"]["assets"][0]["id"]
    assert [i["asset_id"] for i in await history(server, "call_del")] == [generated]
    assert (await server.client.delete(f"/api/v1/library/{generated}", headers=server.auth)).status == 204
    assert await history(server, "call_del") == []


async def test_stats_agree_exactly_with_the_recorded_uses(server: Server, clock: ManualClock) -> None:
    granite = await upload(server, (20, 20, 20), name="Black Galaxy Granite", tags="granite")
    marble = await upload(server, (200, 200, 200), name="Carrara Marble", tags="marble")
    quartz = await upload(server, (100, 90, 80), name="Quartz promo", tags="quartz")

    async def use(asset: dict[str, Any], **body: Any) -> None:
        response = await server.client.post(f"/api/v1/library/{asset['id']}/uses", headers=server.auth, json=body)
        assert response.status == 201, await response.text()

    day1 = clock.now().date()
    for conversation in ("conv_a", "conv_b", "conv_c"):
        await use(granite, kind="agent", agent_id="agent_7", agent_name="Sales Sam", conversation_id=conversation)
    await use(marble, kind="post", platform="instagram", post_id="C3x9")
    clock.advance(days=1)
    day2 = clock.now().date()
    await use(marble, kind="agent", agent_name="Support Sue", conversation_id="conv_d")
    await use(marble, kind="post", platform="linkedin", post_id="7143")
    # A voice tool call counts an agent use too (batched in memory; stats write the batch first).
    tool = await server.client.post("/tools/show_product_image", headers=server.auth,
                                    json={"query": "quartz promo", "conversation_id": "conv_e"})  # fmt: skip
    assert (await tool.json())["status"] == "shown"
    download = await server.client.get(f"/api/v1/library/{quartz['id']}/download", headers=server.auth)
    assert download.status == 200 and "attachment" in download.headers["Content-Disposition"]
    assert await download.read() == png((100, 90, 80))

    for body, field in [({"kind": "post", "platform": "x"}, "post_id"), ({"kind": "like"}, "kind"),
                        ({"kind": "agent"}, "agent_id"),
                        ({"kind": "post", "platform": "x", "post_id": "1", "n": 2}, "n")]:  # fmt: skip
        bad = await server.client.post(f"/api/v1/library/{granite['id']}/uses", headers=server.auth, json=body)
        assert bad.status == 400 and (await bad.json())["error"]["field"] == field, body
    assert (await server.client.post("/api/v1/library/999999/uses", headers=server.auth,
                                     json={"kind": "agent", "agent_id": "a"})).status == 404  # fmt: skip

    stats = await (await server.client.get("/api/v1/library/stats", headers=server.auth, params={"days": 7})).json()
    assert stats["totals"] == {"agent": 5, "post": 2, "download": 1}
    assert [(r["asset"]["name"], r["count"]) for r in stats["top_assets"]] == [
        ("Black Galaxy Granite", 3), ("Carrara Marble", 3), ("Quartz promo", 2)]  # fmt: skip
    assert [(r["asset"]["name"], r["count"]) for r in stats["top_agent_assets"]] == [
        ("Black Galaxy Granite", 3), ("Carrara Marble", 1), ("Quartz promo", 1)]  # fmt: skip
    assert [(d["day"], d["kind"], d["count"]) for d in stats["per_day"]] == [
        (str(day1), "agent", 3), (str(day1), "post", 1),
        (str(day2), "agent", 2), (str(day2), "download", 1), (str(day2), "post", 1)]  # fmt: skip

    detail = await (await server.client.get(f"/api/v1/library/{marble['id']}", headers=server.auth)).json()
    assert detail["asset"]["use_count"] == 3 and detail["asset"]["download_count"] == 0
    assert [(u["kind"], u["platform"] or u["agent_name"]) for u in detail["uses"]] == [
        ("post", "linkedin"), ("agent", "Support Sue"), ("post", "instagram")]  # fmt: skip
    quartz_now = await (await server.client.get(f"/api/v1/library/{quartz['id']}", headers=server.auth)).json()
    assert quartz_now["asset"]["download_count"] == 1 and quartz_now["asset"]["use_count"] == 1

    # A deleted asset leaves the figures.
    await server.client.delete(f"/api/v1/library/{granite['id']}", headers=server.auth)
    stats = await (await server.client.get("/api/v1/library/stats", headers=server.auth)).json()
    assert stats["totals"] == {"agent": 2, "post": 2, "download": 1}


async def test_favorites_and_much_used_assets_rank_a_little_higher(server: Server) -> None:
    plain_one = await upload(server, (1, 1, 1), name="White oak flooring", tags="oak")
    favorite = await upload(server, (2, 2, 2), name="White oak flooring", tags="oak")
    exact = await upload(server, (3, 3, 3), name="White oak herringbone flooring sample", tags="oak, herringbone")

    async def order(q: str) -> list[int]:
        hits = await server.client.get("/api/v1/library/search", headers=server.auth, params={"q": q})
        return [h["asset"]["id"] for h in (await hits.json())["results"]]

    async def twins() -> list[int]:  # the two assets of the same text, in their order
        return [i for i in await order("white oak flooring") if i in (plain_one["id"], favorite["id"])]

    assert await twins() == [favorite["id"], plain_one["id"]]  # a tie: the newest first
    await patch(server, plain_one["id"], favorite=True)
    assert await twins() == [plain_one["id"], favorite["id"]]
    await patch(server, plain_one["id"], favorite=False)
    await patch(server, favorite["id"], favorite=True)
    assert await twins() == [favorite["id"], plain_one["id"]]
    # Much used beats a favorite only by a little more (1.15 against 1.10 from 100 uses).
    for _ in range(3):
        await server.client.post(f"/api/v1/library/{plain_one['id']}/uses", headers=server.auth,
                                 json={"kind": "post", "platform": "instagram", "post_id": "p"})  # fmt: skip
    assert await twins() == [favorite["id"], plain_one["id"]]  # 1.05 from 3 uses is less than 1.10
    # A clearly better text match still wins over a favorite.
    assert (await order("oak herringbone"))[0] == exact["id"]


async def test_every_way_of_reading_pages_through_each_match_once(server: Server, clock: ManualClock) -> None:
    """Tags, words, folders and sorts each take their own index; paging by cursor finds every match once, in
    order, whichever is used."""
    manager, account = server.services.manager, server.account_id
    folder = await manager.create_folder(account, "Showroom")
    made = []
    for i in range(23):
        clock.advance(seconds=30)
        tags = ["granite" if i % 3 == 0 else "marble", "promo" if i % 5 == 0 else "catalog"]
        asset = await upload(server, (i * 9, 200 - i * 7, 60), name=f"{'Black' if i % 2 else 'White'} slab {i:02d}",
                             tags=",".join(tags))  # fmt: skip
        if i % 4 == 0:
            await manager.update(account, asset["id"], {"folder_id": folder.id})
        for _ in range(i % 6):
            await manager.record_use(account, asset["id"], "post", {"platform": "x", "post_id": str(i)})
        made.append((i, tags, asset["id"]))
    newest = [a for _, _, a in reversed(made)]

    async def every_page(**params: Any) -> list[int]:
        found, cursor = [], None
        while True:
            page = await manager.list_assets(account, limit=4, cursor=cursor, **params)
            found += [a.id for a in page.assets]
            if (cursor := page.cursor) is None:
                return found

    granite = {a for i, tags, a in made if "granite" in tags}
    assert await every_page(tag="granite") == [a for a in newest if a in granite]
    black = {a for i, _, a in made if i % 2}
    assert await every_page(q="black slab") == [a for a in newest if a in black]
    in_folder = {a for i, _, a in made if i % 4 == 0}
    assert await every_page(q="slab", folder_id=folder.id) == [a for a in newest if a in in_folder]
    by_uses = sorted(made, key=lambda m: (m[0] % 6, m[2]), reverse=True)
    assert await every_page(tag="promo", sort="most_used") == [a for i, t, a in by_uses if "promo" in t]
    by_name = sorted(made, key=lambda m: (f"{'Black' if m[0] % 2 else 'White'} slab {m[0]:02d}", m[2]))
    assert await every_page(q="slab", sort="name") == [a for _, _, a in by_name]
    ranked = await every_page(q="black", sort="relevance")
    assert sorted(ranked) == sorted(black) and len(ranked) == len(set(ranked))
