"""The account's pages: Generate (the result arrives on the page through the job's gallery events), Credits
(balance, quotas, ledger, buying a pack through Stripe Checkout, orders), Usage (charts and CSV), Keys and
agents (API keys, tool exports, viewer links, recent conversations) and Members."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

from aiohttp import web

from core.errors import InvalidRequest
from core.generation import GenerationRequest
from core.teams import can_manage
from tools.dialects import export_tools
from tools.http import SERVICES, plain, read_json
from tools.viewers import viewer_url
from tools.webapp import account_of, page, person_of, render, settings_of
from tools.webapp.charts import bar_chart

ROUTES = web.RouteTableDef()
EXPORT_FORMATS = ("elevenlabs", "vapi", "retell", "openai", "openai-responses", "mcp")


def web_conversation(email: str) -> str:
    """The conversation id the Generate page's jobs run in: the person's own, so their page sees its events."""
    return "web-" + hashlib.sha256(email.encode()).hexdigest()[:16]


@ROUTES.get("/generate")
@page()
async def generate_page(request: web.Request) -> web.Response:
    """Pickers from the catalog, a live cost with the balance beside it, and a place for the result."""
    services, settings = request.config_dict[SERVICES], settings_of(request)
    account_id = account_of(request)
    pricing = services.billing.pricing()
    custom = await services.models.custom(account_id)
    models = [m for m in pricing["models"] if m["kind"] in ("image", "video")]
    models += [{"id": m.name, "kind": "image", "credits": settings.training.generation_price,
                "description": f"your model ({m.trigger_word})"} for m in custom]  # fmt: skip
    conversation = web_conversation(person_of(request).email)
    token, _ = services.viewer_tokens.mint(account_id, conversation, ttl_seconds=settings.webapp.session_hours * 3600)
    recent = await services.manager.list_assets(account_id, kind="image", limit=24)
    context = {
        "models": models, "operations": {op: services.settings.models[m].price for op, m in
                                         settings.generation.operations.items() if m in services.settings.models},
        "aspect_ratios": settings.aspect_ratios, "styles": sorted(settings.styles),
        "default_model": settings.generation.default_model, "balance": await services.credits.balance(account_id),
        "conversation": conversation, "viewer_token": token, "inputs": recent.assets,
    }  # fmt: skip
    return await render(request, "generate.html", context)


@ROUTES.post("/api/generate")
@page()
async def generate(request: web.Request) -> web.Response:
    """Start a job from the Generate page (JSON ``prompt``, ``model`` or ``operation``, ``aspect_ratio``,
    ``style``, ``input_asset_id``, ``num_outputs``); 202 with the job. The page learns the outcome from its
    gallery socket."""
    from tools.api import GenerationBody, _validated

    services, settings = request.config_dict[SERVICES], settings_of(request)
    body = _validated(GenerationBody, await read_json(request))
    model = body.model
    if body.operation is not None:
        model = settings.generation.operations[body.operation]
    job = await services.generation.submit(account_of(request), GenerationRequest(
        prompt=body.prompt, style=body.style, aspect_ratio=body.aspect_ratio, model=model,
        num_outputs=body.num_outputs, conversation_id=web_conversation(person_of(request).email), source="web",
        idempotency_key=request.headers.get("Idempotency-Key"), input_asset_id=body.input_asset_id,
    ))  # fmt: skip
    return web.json_response({"job": {"id": job.id, "cost": job.cost, "unit": job.unit, "status": job.status}},
                             status=202)  # fmt: skip


@ROUTES.get("/api/balance")
@page()
async def balance(request: web.Request) -> web.Response:
    """The balance as JSON (the Generate page refreshes it after a job)."""
    return web.json_response(plain(await request.config_dict[SERVICES].credits.balance(account_of(request))))


@ROUTES.get("/credits")
@page()
async def credits_page(request: web.Request) -> web.Response:
    """Balance, session quotas with minutes left, the ledger, packs (owners and admins buy), orders."""
    services = request.config_dict[SERVICES]
    account_id = account_of(request)
    context = {
        "balance": await services.credits.balance(account_id), "ledger": await services.credits.ledger(account_id, 50),
        "packs": services.billing.pricing()["packs"], "orders": await services.billing.orders(account_id=account_id),
        "paid": request.query.get("paid") == "1",
    }  # fmt: skip
    return await render(request, "credits.html", context)


@ROUTES.post("/credits/buy")
@page(manage=True)
async def buy(request: web.Request) -> web.StreamResponse:
    """Start Stripe Checkout for a pack (owners and admins); the buyer returns to the Credits page."""
    form = await request.post()
    result = await request.config_dict[SERVICES].billing.checkout(str(form.get("product") or ""),
                                                                  account_of(request), "web")  # fmt: skip
    raise web.HTTPSeeOther(result.url)


async def _usage(request: web.Request) -> tuple[int, dict[str, Any], Any]:
    services = request.config_dict[SERVICES]
    raw = request.query.get("days", "30")
    days = int(raw) if raw.isdigit() and 1 <= int(raw) <= 366 else 30
    await services.uses.flush()
    stats = await services.manager.stats(account_of(request), days=days)
    usage = await services.reports.account_usage(account_of(request), days)
    return days, stats, usage


@ROUTES.get("/usage")
@page()
async def usage_page(request: web.Request) -> web.Response:
    """Images and videos per day, credits per model, top assets by agent references, top prompts, library uses
    per day: charts drawn here as SVG, with the same figures as tables and as CSV."""
    days, stats, usage = await _usage(request)
    outputs: dict[str, dict[str, int]] = {}
    for day, kind, n in usage.outputs:
        bucket = outputs.setdefault(day, {"image": 0, "video": 0})
        bucket["video" if "video" in kind else "image"] += n
    uses: dict[str, dict[str, int]] = {}
    for row in stats["per_day"]:
        uses.setdefault(row["day"], {})[row["kind"]] = row["count"]
    context = {
        "days": days, "stats": stats, "usage": usage, "outputs": outputs, "uses": uses,
        "outputs_chart": bar_chart("Images and videos per day", [(d, v["image"] + v["video"]) for d, v in
                                                                 sorted(outputs.items())]),
        "credits_chart": bar_chart("Credits spent per model", usage.credits),
        "agent_chart": bar_chart("Top assets by agent references",
                                 [(r["asset"]["name"], r["count"]) for r in stats["top_agent_assets"]]),
    }  # fmt: skip
    return await render(request, "usage.html", context)


@ROUTES.get("/usage.csv")
@page()
async def usage_csv(request: web.Request) -> web.Response:
    """The Usage page's figures as CSV: one row per figure (section, key, kind, value)."""
    days, stats, usage = await _usage(request)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "kind", "value"])
    writer.writerows(("outputs_per_day", d, k, n) for d, k, n in usage.outputs)
    writer.writerows(("credits_per_model", m, "credit", c) for m, c in usage.credits)
    writer.writerows(("top_prompts", p, "jobs", n) for p, n in usage.prompts)
    writer.writerows(("top_agent_assets", r["asset"]["name"], r["asset"]["id"], r["count"])
                     for r in stats["top_agent_assets"])  # fmt: skip
    writer.writerows(("top_assets", r["asset"]["name"], r["asset"]["id"], r["count"]) for r in stats["top_assets"])
    writer.writerows(("library_uses_per_day", r["day"], r["kind"], r["count"]) for r in stats["per_day"])
    return web.Response(text=out.getvalue(), content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="showme-usage-{days}-days.csv"'})  # fmt: skip


async def _keys(request: web.Request, **shown: Any) -> web.Response:
    """The Keys page, with ``shown`` (a new key, a viewer link) when given."""
    services, settings = request.config_dict[SERVICES], settings_of(request)
    account_id = account_of(request)
    exports = {fmt: json.dumps(export_tools(services.tools, fmt, settings.server.public_url), indent=2)
               for fmt in EXPORT_FORMATS}  # fmt: skip
    conversations = []
    for conversation, at, jobs in await services.store.jobs.recent_conversations(account_id, 20):
        token, _ = services.viewer_tokens.mint(account_id, conversation)
        conversations.append({"id": conversation, "at": at, "jobs": jobs,
                              "url": viewer_url(settings.server.public_url, conversation, token)})  # fmt: skip
    context = {"keys": await services.accounts.api_keys(account_id), "exports": exports,
               "conversations": conversations, "scopes": ("tools", "generate", "library", "credits", "admin"),
               "new_key": None, "viewer_link": None, **shown}  # fmt: skip
    return await render(request, "keys.html", context)


@ROUTES.get("/keys")
@page(manage=True)
async def keys_page(request: web.Request) -> web.Response:
    """API keys, tool exports with a copy button, the viewer-link maker and recent conversations."""
    return await _keys(request)


@ROUTES.post("/keys")
@page(manage=True)
async def create_key(request: web.Request) -> web.Response:
    """Mint a key and show it once."""
    form = await request.post()
    scopes = tuple(str(s) for s in form.getall("scopes", [])) or ("tools", "generate", "library", "credits")
    name = str(form.get("name") or "")[:200] or None
    key = await request.config_dict[SERVICES].accounts.create_api_key(account_of(request), scopes=scopes, name=name)
    return await _keys(request, new_key=key)


@ROUTES.post("/keys/{key_id}/revoke")
@page(manage=True)
async def revoke_key(request: web.Request) -> web.StreamResponse:
    """Revoke a key at once."""
    raw = request.match_info["key_id"]
    if not raw.isdigit():
        raise InvalidRequest("no such key", field="key_id")
    await request.config_dict[SERVICES].accounts.revoke_api_key(account_of(request), int(raw))
    raise web.HTTPSeeOther("/app/keys?revoked=1")


@ROUTES.post("/viewer-link")
@page(manage=True)
async def viewer_link(request: web.Request) -> web.Response:
    """A gallery link for a conversation id."""
    services, settings = request.config_dict[SERVICES], settings_of(request)
    conversation = str((await request.post()).get("conversation_id") or "").strip()
    token, expires = services.viewer_tokens.mint(account_of(request), conversation)
    link = {"url": viewer_url(settings.server.public_url, conversation, token), "expires_at": expires}
    return await _keys(request, viewer_link=link)


async def _members(request: web.Request, invite: str | None = None) -> web.Response:
    """The Members page, with a new invite's link when given."""
    teams = request.config_dict[SERVICES].teams
    account_id = account_of(request)
    members, shares = await teams.members(account_id), await teams.shares_of(account_id)
    return await render(request, "members.html", {"members": members, "invite": invite, "shares": shares})


@ROUTES.get("/members")
@page(manage=True)
async def members_page(request: web.Request) -> web.Response:
    """Members with their roles, the invite form, and what the account shared."""
    return await _members(request)


@ROUTES.post("/members")
@page(manage=True)
async def invite(request: web.Request) -> web.Response:
    """Invite a person by email (the link is emailed and shown)."""
    form = await request.post()
    link = await request.config_dict[SERVICES].teams.invite(
        account_of(request), str(form.get("email") or ""), str(form.get("role") or "member"), person_of(request).email
    )
    return await _members(request, link)


@ROUTES.post("/members/{member_id}")
@page(manage=True)
async def change_member(request: web.Request) -> web.StreamResponse:
    """Change a member's role, or remove them (``role`` empty)."""
    raw = request.match_info["member_id"]
    if not raw.isdigit():
        raise InvalidRequest("no such member", field="member_id")
    role = str((await request.post()).get("role") or "") or None
    await request.config_dict[SERVICES].teams.change_member(account_of(request), int(raw), role)
    if role is None and person_of(request).role and not can_manage(person_of(request).role):
        raise web.HTTPSeeOther("/app/library")
    raise web.HTTPSeeOther("/app/members")
