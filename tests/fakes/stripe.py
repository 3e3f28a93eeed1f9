"""A small fake of the Stripe API on loopback, speaking Stripe's wire format to stripe-python.

Implements what showme calls: ``POST /v1/checkout/sessions`` (form-encoded, nested ``a[b][0][c]`` keys,
``Idempotency-Key`` replays the first response), ``GET /v1/checkout/sessions/{id}``,
``GET /v1/payment_intents/{id}``; errors in Stripe's ``{"error": {"type", "code", "message"}}`` shape.
Test helpers play the buyer and Stripe: ``pay`` completes a session, ``event`` builds an event envelope
(``resources.event`` in stripe/openapi fixtures3.json), ``sign`` makes a real ``Stripe-Signature`` header.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

import stripe
from aiohttp import web

API_KEY = "sk_test_showme_fake"
WEBHOOK_SECRET = "whsec_showme_test_secret"


def _id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(12)}"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Rebuild nested params from Stripe's encoding: ``line_items[0][price_data][currency]=usd``."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node: Any) -> Any:
    if isinstance(node, dict):
        if node and all(k.isdigit() for k in node):
            return [_lists(node[k]) for k in sorted(node, key=int)]
        return {k: _lists(v) for k, v in node.items()}
    return node


def error(status: int, message: str, type_: str = "invalid_request_error", code: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": {"type": type_, "message": message}}
    if code:
        body["error"]["code"] = code
    return web.json_response(body, status=status)


class FakeStripe:
    def __init__(self) -> None:
        self.sessions: dict[str, dict[str, Any]] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self.fail_next_create = False
        #: Where the hosted payment page sends ``checkout.session.completed`` (signed), like Stripe's webhook.
        self.webhook_url: str | None = None

    # -- server ------------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v1/checkout/sessions", self.create_session)
        app.router.add_get("/v1/checkout/sessions/{id}", self.get_session)
        app.router.add_get("/v1/payment_intents/{id}", self.get_intent)
        app.router.add_get("/v1/balance", self.get_balance)
        app.router.add_get("/pay/{id}", self.payment_page)
        app.router.add_post("/pay/{id}", self.pay_and_return)
        return app

    async def payment_page(self, request: web.Request) -> web.Response:
        """The hosted Checkout page (the buyer's browser, no API key): the amount and a Pay button."""
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return web.Response(status=404, text="no such checkout session")
        amount = f"{session['amount_total'] / 100:.2f} {session['currency'].upper()}"
        return web.Response(content_type="text/html", text=(
            f"<!doctype html><title>Pay</title><h1>Pay {amount}</h1>"
            f"<form method=post><button type=submit>Pay {amount}</button></form>"
        ))  # fmt: skip

    async def pay_and_return(self, request: web.Request) -> web.StreamResponse:
        """The buyer pays: the session completes, ``checkout.session.completed`` goes to ``webhook_url``
        (signed), and the browser returns to the session's ``success_url``."""
        import aiohttp

        session_id = request.match_info["id"]
        if session_id not in self.sessions:
            return web.Response(status=404, text="no such checkout session")
        paid = self.pay(session_id)
        if self.webhook_url:
            payload = self.event("checkout.session.completed", paid)
            async with aiohttp.ClientSession() as http, http.post(
                self.webhook_url, data=payload,
                headers={"Stripe-Signature": self.sign(payload), "Content-Type": "application/json"},
            ) as answer:  # fmt: skip
                answer.raise_for_status()
        raise web.HTTPSeeOther(paid["success_url"].replace("{CHECKOUT_SESSION_ID}", session_id))

    async def get_balance(self, request: web.Request) -> web.Response:
        """``GET /v1/balance``: what ``showme doctor`` asks to check the key (docs.stripe.com/api/balance)."""
        return web.json_response(
            {"object": "balance", "available": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}],
             "pending": [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}], "livemode": False}
        )  # fmt: skip

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": await request.text(),
            }
        )
        if request.path.startswith("/pay/"):
            return await handler(request)
        if request.headers.get("Authorization") != f"Bearer {API_KEY}":
            return error(401, "Invalid API Key provided", type_="invalid_request_error")
        return await handler(request)

    async def create_session(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if key and key in self.idempotent:
            return web.json_response(self.idempotent[key])
        if self.fail_next_create:
            self.fail_next_create = False
            return error(500, "An unknown error occurred", type_="api_error")
        params = decode_form(list((await request.post()).items()))  # type: ignore[arg-type]
        for required in ("mode", "success_url", "line_items"):
            if required not in params:
                return error(400, f"Missing required param: {required}.", code="parameter_missing")
        items = params["line_items"]
        total = sum(int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items)
        session_id = _id("cs")
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": params["mode"],
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "amount_total": total,
            "currency": items[0]["price_data"]["currency"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata", {}),
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.base_url}/pay/{session_id}",
            "livemode": False,
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "_intent_metadata": params.get("payment_intent_data", {}).get("metadata", {}),
            "_line_items": items,
        }
        self.sessions[session_id] = session
        public = self.public(session)
        if key:
            self.idempotent[key] = public
        return web.json_response(public)

    @staticmethod
    def public(obj: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if not k.startswith("_")}

    async def get_session(self, request: web.Request) -> web.Response:
        session = self.sessions.get(request.match_info["id"])
        if session is None:
            return error(404, f"No such checkout.session: '{request.match_info['id']}'", code="resource_missing")
        return web.json_response(self.public(session))

    async def get_intent(self, request: web.Request) -> web.Response:
        intent = self.intents.get(request.match_info["id"])
        if intent is None:
            return error(404, f"No such payment_intent: '{request.match_info['id']}'", code="resource_missing")
        return web.json_response(intent)

    # -- what the buyer and Stripe do ------------------------------------------------------------------------

    def payment_intent(
        self, amount: int, currency: str, metadata: dict[str, str], status: str = "succeeded"
    ) -> dict[str, Any]:
        intent = {
            "id": _id("pi"),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount if status == "succeeded" else 0,
            "currency": currency,
            "status": status,
            "metadata": metadata,
            "latest_charge": _id("ch"),
            "livemode": False,
        }
        self.intents[intent["id"]] = intent
        return intent

    def pay(self, session_id: str, *, delayed: bool = False) -> dict[str, Any]:
        """The buyer pays: the session completes (``paid``, or ``unpaid`` for a delayed method) with a
        PaymentIntent carrying ``payment_intent_data.metadata``. Returns the session JSON."""
        session = self.sessions[session_id]
        intent = self.payment_intent(
            session["amount_total"], session["currency"], session["_intent_metadata"],
            status="processing" if delayed else "succeeded",
        )  # fmt: skip
        session.update(status="complete", payment_status="unpaid" if delayed else "paid", payment_intent=intent["id"])
        return self.public(session)

    def settle_delayed(self, session_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        session = self.sessions[session_id]
        intent = self.intents[session["payment_intent"]]
        intent.update(status="succeeded" if succeeded else "requires_payment_method")
        if succeeded:
            intent["amount_received"] = intent["amount"]
            session["payment_status"] = "paid"
        return self.public(session)

    def refund(self, payment_intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """A ``charge`` object as ``charge.refunded`` carries it."""
        intent = self.intents[payment_intent_id]
        refunded = intent["amount"] if amount is None else amount
        return {
            "id": intent["latest_charge"],
            "object": "charge",
            "amount": intent["amount"],
            "amount_refunded": refunded,
            "currency": intent["currency"],
            "payment_intent": payment_intent_id,
            "refunded": refunded >= intent["amount"],
            "status": "succeeded",
        }

    @staticmethod
    def event(type_: str, obj: dict[str, Any], event_id: str | None = None) -> str:
        """An event envelope as Stripe posts it (the body to sign and send, as text)."""
        return json.dumps(
            {
                "id": event_id or _id("evt"),
                "object": "event",
                "api_version": "2026-10-28.endive",
                "created": int(time.time()),
                "data": {"object": obj},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": type_,
            }
        )

    @staticmethod
    def sign(payload: str, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
        """A real ``Stripe-Signature`` header (stripe-python's own generator)."""
        return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)
