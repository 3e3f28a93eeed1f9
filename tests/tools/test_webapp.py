"""The web app over HTTP (aiohttp's client keeps the session cookie): one-time links, CSRF, roles, shares, and
the Usage page agreeing with the library statistics. On SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient

from core.teams import Teams
from tests.tools.conftest import Server, form, png
from tools.webapp.account_pages import web_conversation

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A person's own cookie jar against the test server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        # Cookies of an IP address host are kept only by an "unsafe" jar (as browsers do for 127.0.0.1).
        self.http = ClientSession(base_url=str(server.client.make_url("/")), cookie_jar=CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str]:
        async with self.http.get(path, allow_redirects=False, **kwargs) as response:
            text = await response.text(errors="replace")
        if found := CSRF.search(text):
            self.csrf = found.group(1)
        return response.status, text

    async def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True) -> tuple[int, str]:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf
        async with self.http.post(path, data=body, allow_redirects=False) as response:
            if 300 <= response.status < 400:
                return response.status, response.headers["Location"]
            return response.status, await response.text()

    async def sign_in(self, link: str) -> tuple[int, str]:
        path = "/" + link.split("//", 1)[1].split("/", 1)[1]
        status, _ = await self.get(path)
        assert status == 200
        return await self.post(path)

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def people(server: Server) -> Any:
    teams: Teams = server.services.teams
    await teams.add_member(server.account_id, "Olivia@Acme.test", "owner")
    opened: list[Browser] = []

    async def open_as(email: str) -> Browser:
        browser = Browser(server)
        opened.append(browser)
        status, where = await browser.sign_in(await teams.login_link(email))
        assert status == 303 and where.endswith("/app/library"), (status, where)
        await browser.get("/app/library")
        return browser

    yield open_as
    for browser in opened:
        await browser.close()


async def test_a_login_link_works_once_and_a_forged_one_never(server: Server) -> None:
    teams = server.services.teams
    await teams.add_member(server.account_id, "olivia@acme.test", "owner")
    link = await teams.login_link("olivia@acme.test")
    first, second, forger = Browser(server), Browser(server), Browser(server)
    try:
        assert (await first.sign_in(link))[0] == 303
        assert (await first.get("/app/credits"))[0] == 200
        status, text = await second.sign_in(link)  # reused
        assert status == 400 and "not valid" in text
        assert (await second.get("/app/credits"))[0] == 303  # still signed out: to the sign-in page
        raw, _, mac = link.rsplit("/", 1)[1].partition(".")
        for token in (f"{raw}.{mac[:-2]}xx", f"{raw[:-3]}abc.{mac}", "a.b", "nonsense"):
            status, _ = await forger.sign_in(link.rsplit("/", 1)[0] + "/" + token)
            assert status == 400, token
        assert (await forger.get("/app/library"))[0] == 303
        # An expired link signs no one in either.
        late = await teams.login_link("olivia@acme.test")
        server.services.clock.advance(seconds=teams.login_ttl + 1)  # type: ignore[attr-defined]
        assert (await forger.sign_in(late))[0] == 400
    finally:
        for browser in (first, second, forger):
            await browser.close()


async def test_the_sign_in_page_emails_a_link_only_to_known_people(server: Server, capsys: Any) -> None:
    await server.services.teams.add_member(server.account_id, "olivia@acme.test", "owner")
    browser = Browser(server)
    try:
        await browser.get("/app/login")
        status, text = await browser.post("/app/login", {"email": "  Olivia@ACME.test "})
        assert status == 200 and "on its way" in text
        link = re.search(r"(http://\S+/app/login/\S+)", capsys.readouterr().out)
        assert link is not None  # the stdout sender printed the email
        status, unknown = await browser.post("/app/login", {"email": "stranger@example.com"})
        assert status == 200 and "on its way" in unknown  # the same answer: no way to probe addresses
        assert "stranger@example.com" not in capsys.readouterr().out
        assert (await browser.sign_in(link.group(1)))[0] == 303
    finally:
        await browser.close()


async def test_sign_in_emails_are_limited_per_address(server: Server, capsys: Any) -> None:
    await server.services.teams.add_member(server.account_id, "olivia@acme.test", "owner")
    browser = Browser(server)
    try:
        await browser.get("/app/login")
        statuses = [(await browser.post("/app/login", {"email": "olivia@acme.test"}))[0] for _ in range(11)]
        assert statuses == [200] * 10 + [429]
        assert capsys.readouterr().out.count("/app/login/") == 10  # the eleventh sent nothing
    finally:
        await browser.close()


async def test_every_form_needs_its_csrf_token(server: Server, people: Any) -> None:
    olivia = await people("olivia@acme.test")
    for path, data in [("/app/folders", {"name": "Kitchens"}), ("/app/keys", {"name": "x"}),
                       ("/app/logout", {}), ("/app/credits/buy", {"product": "pack_small"})]:  # fmt: skip
        status, text = await olivia.post(path, data, csrf=False)
        assert status == 403 and "expired or did not come from this page" in text, path
        status, _ = await olivia.post(path, {**data, "csrf_token": "forged"}, csrf=False)
        assert status == 403, path
    async with olivia.http.post("/app/api/generate", json={"prompt": "a kitchen"}) as response:
        assert response.status == 403
    cross_site = {"Origin": "https://evil.example"}
    body = {"name": "K", "csrf_token": olivia.csrf}
    async with olivia.http.post("/app/folders", data=body, headers=cross_site, allow_redirects=False) as response:
        assert response.status == 403
    assert await server.services.manager.folders(server.account_id) == []
    assert (await olivia.post("/app/folders", {"name": "Kitchens"}))[0] == 303


async def test_members_may_not_buy_or_manage_keys_and_members(server: Server, people: Any) -> None:
    olivia = await people("olivia@acme.test")
    status, page = await olivia.post("/app/members", {"email": "Max@Acme.test", "role": "member"})
    assert status == 200
    invite = re.search(r'id="invite-link" value="([^"]+)"', page)
    assert invite is not None
    max_ = Browser(server)
    try:
        status, _ = await max_.sign_in(invite.group(1).replace("&amp;", "&"))
        assert status == 303
        _, credits = await max_.get("/app/credits")
        assert "/app/credits/buy" not in credits and "Ask an owner or admin" in credits
        _, library = await max_.get("/app/library")
        assert 'href="/app/keys"' not in library and 'href="/app/members"' not in library
        for path, data in [("/app/credits/buy", {"product": "pack_small"}), ("/app/keys", {"name": "mine"}),
                           ("/app/members", {"email": "eve@acme.test", "role": "owner"}),
                           ("/app/keys/1/revoke", {}), ("/app/viewer-link", {"conversation_id": "c1"})]:  # fmt: skip
            status, text = await max_.post(path, data)
            assert status == 403 and "owners and admins" in text, path
        for path in ("/app/keys", "/app/members"):
            assert (await max_.get(path))[0] == 403
        # A member still generates, uploads and manages the library.
        assert (await max_.post("/app/folders", {"name": "Max's"}))[0] == 303
        assert (await max_.get("/app/generate"))[0] == 200
        members = await server.services.teams.members(server.account_id)
        assert [(m.email, m.role) for m in members] == [("olivia@acme.test", "owner"), ("max@acme.test", "member")]
        # The last owner cannot be removed or demoted.
        owner_id = members[0].id
        status, text = await olivia.post(f"/app/members/{owner_id}", {"role": "member"})
        assert status == 409 and "at least one owner" in text
    finally:
        await max_.close()


async def test_a_view_share_is_seen_but_not_changed_by_an_outsider(server: Server, people: Any) -> None:
    upload = await server.client.post("/api/v1/library", headers=server.auth,
                                      data=form(png((20, 20, 20)), name="Black Galaxy Granite"))  # fmt: skip
    granite = (await upload.json())["asset"]
    upload = await server.client.post("/api/v1/library", headers=server.auth,
                                      data=form(png((200, 200, 200)), name="Calacatta Marble"))  # fmt: skip
    marble = (await upload.json())["asset"]
    olivia = await people("olivia@acme.test")
    assert (await olivia.post(f"/app/library/{granite['id']}/share", {"email": "Dana@Designer.test",
                                                                      "permission": "view"}))[0] == 303  # fmt: skip
    dana = await people("dana@designer.test")  # no account of her own: only what was shared
    _, library = await dana.get("/app/library")
    assert "Black Galaxy Granite" in library and "Calacatta Marble" not in library
    status, detail = await dana.get(f"/app/library/{granite['id']}")
    assert status == 200 and 'id="edit-asset"' not in detail and "shared with you to <strong>view</strong>" in detail
    status, _ = await dana.post(f"/app/library/{granite['id']}", {"name": "Mine now"})
    assert status == 403
    assert (await dana.post(f"/app/library/{granite['id']}/favorite"))[0] == 403
    assert (await dana.get(f"/app/library/{granite['id']}/download"))[0] == 403  # view is not use
    assert (await dana.post(f"/app/library/{granite['id']}/delete"))[0] == 403
    assert (await dana.get(f"/app/library/{marble['id']}"))[0] == 404  # not shared: not there for her
    for path in ("/app/credits", "/app/generate", "/app/usage"):
        assert (await dana.get(path))[0] == 403
    after = await server.services.library.get(server.account_id, granite["id"])
    assert after.name == "Black Galaxy Granite" and not after.favorite
    # Edit on a folder reaches the assets inside it.
    folder = await server.services.manager.create_folder(server.account_id, "Marbles")
    await server.services.manager.update(server.account_id, marble["id"], {"folder_id": folder.id})
    assert (await olivia.post(f"/app/folders/{folder.id}/share", {"email": "dana@designer.test",
                                                                 "permission": "edit"}))[0] == 303  # fmt: skip
    assert (await dana.post(f"/app/library/{marble['id']}", {"name": "Calacatta Gold"}))[0] == 303
    assert (await server.services.library.get(server.account_id, marble["id"])).name == "Calacatta Gold"
    assert (await dana.get(f"/app/library/{marble['id']}/download"))[0] == 200


def _table(html: str, table_id: str) -> list[list[str]]:
    body = re.search(rf'<table class="list" id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body is not None, table_id
    rows = re.findall(r"<tr>(.*?)</tr>", body.group(1), re.S)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in rows]  # fmt: skip


async def test_the_usage_page_agrees_with_the_recorded_uses(server: Server, people: Any) -> None:
    ids = {}
    for name, color in (("Black Galaxy Granite", (20, 20, 20)), ("Calacatta Marble", (200, 200, 200))):
        upload = await server.client.post("/api/v1/library", headers=server.auth, data=form(png(color), name=name))
        ids[name] = (await upload.json())["asset"]["id"]

    async def use(name: str, **body: Any) -> None:
        response = await server.client.post(f"/api/v1/library/{ids[name]}/uses", headers=server.auth, json=body)
        assert response.status == 201

    for conversation in ("c1", "c2", "c3"):
        await use("Black Galaxy Granite", kind="agent", agent_id="a1", conversation_id=conversation)
    await use("Calacatta Marble", kind="agent", agent_name="Sue", conversation_id="c4")
    await use("Calacatta Marble", kind="post", platform="instagram", post_id="p1")
    server.services.clock.advance(days=1)  # type: ignore[attr-defined]
    shown = await server.client.post("/tools/show_product_image", headers=server.auth,
                                     json={"query": "calacatta marble", "conversation_id": "c5"})  # fmt: skip
    assert (await shown.json())["status"] == "shown"
    olivia = await people("olivia@acme.test")
    assert (await olivia.get(f"/app/library/{ids['Calacatta Marble']}/download"))[0] == 200

    stats = await (await server.client.get("/api/v1/library/stats", headers=server.auth)).json()
    _, usage = await olivia.get("/app/usage")
    assert _table(usage, "agent-table") == [[r["asset"]["name"], str(r["count"])] for r in stats["top_agent_assets"]]
    assert _table(usage, "agent-table") == [["Black Galaxy Granite", "3"], ["Calacatta Marble", "2"]]
    per_day: dict[str, dict[str, int]] = {}
    for row in stats["per_day"]:
        per_day.setdefault(row["day"], {})[row["kind"]] = row["count"]
    expected = [[day, *(str(kinds.get(k, 0)) for k in ("agent", "post", "download", "view"))]
                for day, kinds in sorted(per_day.items())]  # fmt: skip
    assert _table(usage, "uses-table") == expected
    assert [row[1:] for row in expected] == [["4", "1", "0", "0"], ["1", "0", "1", "0"]]
    status, text = await olivia.get("/app/usage.csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert status == 200 and rows[0] == ["section", "key", "kind", "value"]
    assert [r[1:] for r in rows if r[0] == "top_agent_assets"] == [
        [r["asset"]["name"], str(r["asset"]["id"]), str(r["count"])] for r in stats["top_agent_assets"]]  # fmt: skip
    assert [r[1:] for r in rows if r[0] == "library_uses_per_day"] == [
        [r["day"], r["kind"], str(r["count"])] for r in stats["per_day"]]  # fmt: skip


async def test_generating_from_the_page_charges_once_and_reaches_its_viewers(server: Server, people: Any) -> None:
    olivia = await people("olivia@acme.test")
    before = await server.balance()
    token = server.services.viewer_tokens.mint(server.account_id, web_conversation("olivia@acme.test"))[0]
    client: TestClient[Any, Any] = server.client
    ws = await client.ws_connect(f"/ws/calls/{web_conversation('olivia@acme.test')}?token={token}")
    assert (await ws.receive_json(timeout=5))["type"] == "history"
    async with olivia.http.post("/app/api/generate", json={"prompt": "white oak kitchen", "model": "flux_schnell"},
                                headers={"X-CSRF-Token": olivia.csrf}) as response:  # fmt: skip
        assert response.status == 202, await response.text()
        job = (await response.json())["job"]
    events = []
    while not events or events[-1]["type"] not in ("image_generated", "generation_failed"):
        events.append(await ws.receive_json(timeout=10))
    assert events[-1]["type"] == "image_generated" and events[-1]["job_id"] == job["id"]
    await ws.close()
    assert await server.balance() == before - job["cost"]
    async with olivia.http.post("/app/api/generate", json={"prompt": "x", "model": "no_such_model"},
                                headers={"X-CSRF-Token": olivia.csrf}) as response:  # fmt: skip
        error = (await response.json())["error"]
        assert response.status == 400 and error["field"] == "model"
    assert await server.balance() == before - job["cost"]
