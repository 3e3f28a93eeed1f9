"""The business web app at ``/app``: server-rendered Jinja2 pages (aiohttp-jinja2) with one small script
(``static/app.js``) where a page updates in place, sessions in encrypted cookies (aiohttp-session, Fernet), and
a CSRF token on every form.

Who is signed in comes from a one-time link (``core.teams``); each request loads the person's membership again,
so a changed role or a removed member takes effect at once. Pages answer HTML errors; ``/app/api/…`` helpers
answer JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from core.config import ZERO_DECIMAL_CURRENCIES, Settings
from core.errors import Forbidden, ShowmeError
from core.teams import Person, can_manage
from tools.http import SERVICES, SETTINGS

HERE = Path(__file__).parent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PERSON = "person"  # the request key of the signed-in ``Person``
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def session_key(signing_key: bytes) -> bytes:
    """The cookie encryption key (32 bytes, made a Fernet key by aiohttp-session), derived from the server's
    signing key."""
    return hashlib.sha256(b"webapp-session:" + signing_key).digest()


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token (made on first use)."""
    session = await get_session(request)
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse (403) any unsafe request whose ``X-CSRF-Token`` header or ``csrf_token`` form field is not the
    session's token, or whose ``Origin`` is another site."""
    if request.method in UNSAFE:
        origin = request.headers.get("Origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
            raise Forbidden("this form came from another site")
        session = await get_session(request)
        sent = request.headers.get("X-CSRF-Token")
        if sent is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            sent = str((await request.post()).get("csrf_token") or "")
        expected = session.get("csrf")
        if not sent or not expected or not hmac.compare_digest(str(sent), str(expected)):
            raise Forbidden("this form has expired or did not come from this page: reload the page and try again")
    return await handler(request)


@web.middleware
async def page_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Core errors as a page (or JSON for ``/app/api/…`` and script requests), with their HTTP status."""
    try:
        return await handler(request)
    except ShowmeError as err:
        if request.path.startswith("/app/api/") or request.headers.get("Accept") == "application/json":
            body = {"error": {"code": err.code, "message": err.message, **({"field": err.field} if err.field else {})}}
            return web.json_response(body, status=err.status)
        context = {"status": err.status, "message": err.message}
        return await render(request, "error.html", context, status=err.status)


async def signed_in(request: web.Request) -> Person | None:
    """The signed-in person (their membership read now), or None."""
    if PERSON in request:
        return request[PERSON]  # type: ignore[no-any-return]
    session = await get_session(request)
    email = session.get("email")
    person = None
    if email:
        person = await request.config_dict[SERVICES].teams.person(email, session.get("account_id"))
    request[PERSON] = person
    return person


def page(*, manage: bool = False, account: bool = True) -> Callable[[Handler], Handler]:
    """A handler for signed-in people: others go to the sign-in page (JSON 401 for scripts). ``account``: the
    person must belong to an account; ``manage``: be its owner or admin (403 otherwise)."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            person = await signed_in(request)
            if person is None:
                if request.method == "GET" and not request.path.startswith("/app/api/"):
                    raise web.HTTPSeeOther(f"/app/login?next={request.path_qs}")
                raise web.HTTPUnauthorized(text="sign in first")
            if account and person.account_id is None:
                raise Forbidden("you do not belong to an account: ask its owner for an invite")
            if manage and not can_manage(person.role):
                raise Forbidden("only the account's owners and admins may do this")
            return await handler(request)

        guarded.__doc__ = handler.__doc__
        guarded.__name__ = handler.__name__
        return guarded

    return wrap


def person_of(request: web.Request) -> Person:
    """The person a ``page`` handler serves."""
    return request[PERSON]  # type: ignore[no-any-return]


def account_of(request: web.Request) -> int:
    """The account a ``page(account=True)`` handler serves."""
    account_id = person_of(request).account_id
    assert account_id is not None
    return account_id


async def render(request: web.Request, template: str, context: dict[str, Any], *, status: int = 200) -> web.Response:
    """``template`` with ``context`` and what every page shows (the person, their accounts, the CSRF token)."""
    person = await signed_in(request)
    services = request.config_dict[SERVICES]
    memberships = await services.teams.memberships(person.email) if person else []
    base = {
        "person": person, "memberships": memberships, "csrf": await csrf_token(request),
        "can_manage": can_manage(person.role) if person else False, "path": request.path,
        "account_name": next((m.account_name for m in memberships if person and m.account_id == person.account_id),
                             ""),
    }  # fmt: skip
    response = aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


async def start_session(request: web.Request, email: str, account_id: int | None) -> None:
    """A new session (a fresh cookie: a session id fixed before sign-in is worth nothing) for ``email``."""
    session = await new_session(request)
    session["email"] = email
    session["account_id"] = account_id
    session["csrf"] = secrets.token_urlsafe(32)


def create_webapp(settings: Settings, signing_key: bytes) -> web.Application:
    """The ``/app`` sub-application (add it with ``app.add_subapp("/app", …)``)."""
    from tools.webapp import account_pages, auth_pages, library_pages

    storage = EncryptedCookieStorage(
        session_key(signing_key), cookie_name="showme_session", max_age=settings.webapp.session_hours * 3600,
        httponly=True, samesite="Lax", secure=settings.server.public_url.startswith("https://"), path="/app",
    )  # fmt: skip
    webapp = web.Application(
        middlewares=[session_middleware(storage), page_errors, csrf_middleware],
        client_max_size=settings.tools.upload_max_bytes + 65536,
    )
    env = aiohttp_jinja2.setup(
        webapp, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=jinja2.select_autoescape(["html"]),
        context_processors=[aiohttp_jinja2.request_processor],
    )
    env.filters["day"] = lambda value: value.strftime("%Y-%m-%d %H:%M") if value else ""
    env.filters["money"] = money
    webapp.router.add_static("/static", HERE / "static", name="static", append_version=True)
    for routes in (auth_pages.ROUTES, library_pages.ROUTES, account_pages.ROUTES):
        webapp.add_routes(routes)
    return webapp


def money(amount: int, currency: str) -> str:
    """An amount in the currency's smallest unit as people read it: ``999, "usd"`` → ``9.99 USD``."""
    if currency.lower() in ZERO_DECIMAL_CURRENCIES:
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"


def settings_of(request: web.Request) -> Settings:
    return request.config_dict[SETTINGS]
