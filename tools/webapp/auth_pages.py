"""Signing in and out: the sign-in page (emails a one-time link), the link's confirm page (a button, so mail
scanners that open links do not use them up), invites, switching account, signing out."""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from core.errors import InvalidRequest
from tools.http import SERVICES
from tools.webapp import render, signed_in, start_session

ROUTES = web.RouteTableDef()


def _next(value: object) -> str:
    """A safe place to go after signing in: a path of this app, else the library."""
    target = str(value or "")
    return target if target.startswith("/app/") and not target.startswith("//") else "/app/library"


@ROUTES.get("")
@ROUTES.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    """``/app``: the library when signed in, else the sign-in page."""
    raise web.HTTPSeeOther("/app/library" if await signed_in(request) else "/app/login")


@ROUTES.get("/login")
async def login_page(request: web.Request) -> web.Response:
    """The sign-in page: an email field."""
    return await render(request, "login.html", {"next": _next(request.query.get("next")), "sent": False})


@ROUTES.post("/login")
async def send_link(request: web.Request) -> web.Response:
    """Email a sign-in link; the page says the same whether or not the address is known."""
    form = await request.post()
    email = str(form.get("email") or "")
    try:
        await request.config_dict[SERVICES].teams.send_login_link(email)
    except InvalidRequest as err:
        return await render(request, "login.html", {"error": err.message, "email": email, "sent": False,
                                                     "next": "/app/library"}, status=400)  # fmt: skip
    return await render(request, "login.html", {"sent": True, "email": email.strip().lower(), "next": ""})


async def _confirm(request: web.Request, purpose: str) -> web.Response:
    return await render(request, "confirm.html", {"purpose": purpose, "token": request.match_info["token"]})


@ROUTES.get("/login/{token}")
async def login_confirm(request: web.Request) -> web.Response:
    """The sign-in link: a page with one button that uses it."""
    return await _confirm(request, "login")


@ROUTES.get("/invite/{token}")
async def invite_confirm(request: web.Request) -> web.Response:
    """The invite link: a page with one button that accepts it."""
    return await _confirm(request, "invite")


async def _redeem(request: web.Request, purpose: str) -> web.StreamResponse:
    services = request.config_dict[SERVICES]
    used = await services.teams.redeem(request.match_info["token"], purpose)
    if used is None:
        context = {"status": 400, "message": "This link is not valid: it was used already, has expired, or was "
                   "changed. Ask for a new one on the sign-in page."}  # fmt: skip
        return await render(request, "error.html", context, status=400)
    person = await services.teams.person(used.email, used.account_id)
    await start_session(request, person.email, person.account_id)
    raise web.HTTPSeeOther("/app/library")


@ROUTES.post("/login/{token}")
async def login(request: web.Request) -> web.StreamResponse:
    """Use a sign-in link (once)."""
    return await _redeem(request, "login")


@ROUTES.post("/invite/{token}")
async def accept_invite(request: web.Request) -> web.StreamResponse:
    """Accept an invite (once): become a member, signed in."""
    return await _redeem(request, "invite")


@ROUTES.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    """Sign out."""
    (await get_session(request)).invalidate()
    raise web.HTTPSeeOther("/app/login")


@ROUTES.post("/account")
async def switch_account(request: web.Request) -> web.StreamResponse:
    """Act in another account the person belongs to."""
    person = await signed_in(request)
    if person is None:
        raise web.HTTPSeeOther("/app/login")
    form = await request.post()
    wanted = str(form.get("account_id") or "")
    memberships = await request.config_dict[SERVICES].teams.memberships(person.email)
    if wanted.isdigit() and any(m.account_id == int(wanted) for m in memberships):
        (await get_session(request))["account_id"] = int(wanted)
    raise web.HTTPSeeOther("/app/library")
