"""HTTP for selling credits: pricing, checkout, purchase, redeem, the Stripe webhook and the checkout pages."""

from __future__ import annotations

import html
import logging
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from core.billing import Activation, Fulfilment
from core.errors import InvalidSignature, NotFound, PaymentsNotConfigured, ShowmeError
from tools.api import _validated
from tools.http import SERVICES, api_key_from, authenticate, plain, read_body, read_json
from tools.schemas import LedgerQuery

log = logging.getLogger(__name__)

STRIPE_WEBHOOK_MAX_BYTES = 512 * 1024


class CheckoutBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    product: str = Field(min_length=1, max_length=64, description="pack:<name> or plan:<name>")


class PurchaseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    amount: int = Field(gt=0, description="credits of the pack bought")
    payment_intent_id: str = Field(alias="paymentIntentId", pattern=r"^pi_[A-Za-z0-9_]+$")


class RedeemBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    code: str = Field(min_length=1, max_length=64)


def activation_json(activation: Activation) -> dict[str, Any]:
    return {**plain(activation), "models": list(activation.models)}


def fulfilment_json(fulfilment: Fulfilment) -> dict[str, Any]:
    data = plain(fulfilment)
    if fulfilment.activation is not None:
        data["activation"] = activation_json(fulfilment.activation)
    return data


async def pricing(request: web.Request) -> web.Response:
    """``GET /api/v1/pricing`` (public): packs, hourly plans, each model's credits per image."""
    return web.json_response(request.app[SERVICES].billing.pricing())


async def create_checkout(request: web.Request) -> web.Response:
    """``POST /api/v1/checkout {"product": "pack:creator" | "plan:flash"}``: 201 with the Checkout URL.

    With an API key the purchase is for that account (a plan activates when paid); without one only plans can
    be bought, and the buyer gets a redemption code on the success page."""
    account_id = (await authenticate(request)).account_id if api_key_from(request) else None
    body = _validated(CheckoutBody, await read_json(request))
    result = await request.app[SERVICES].billing.checkout(body.product, account_id, source="api")
    return web.json_response(plain(result), status=201)


async def purchase(request: web.Request) -> web.Response:
    """``POST /api/v1/credits/purchase {"amount", "paymentIntentId"}``: grant a pack paid by a PaymentIntent."""
    caller = await authenticate(request)
    body = _validated(PurchaseBody, await read_json(request))
    services = request.app[SERVICES]
    fulfilment = await services.billing.purchase_with_payment_intent(
        caller.account_id, body.amount, body.payment_intent_id
    )
    balance = await services.credits.balance(caller.account_id)
    return web.json_response({"fulfilment": fulfilment_json(fulfilment), "balance": plain(balance)})


async def redeem(request: web.Request) -> web.Response:
    """``POST /api/v1/redeem {"code"}``: activate an hourly plan on the calling account."""
    caller = await authenticate(request)
    body = _validated(RedeemBody, await read_json(request))
    services = request.app[SERVICES]
    activation = await services.billing.redeem(body.code, caller.account_id)
    balance = await services.credits.balance(caller.account_id)
    return web.json_response({"activation": activation_json(activation), "balance": plain(balance)})


async def list_orders(request: web.Request) -> web.Response:
    """``GET /api/v1/orders``: the calling account's orders, newest first."""
    caller = await authenticate(request)
    orders = await request.app[SERVICES].billing.orders(account_id=caller.account_id)
    return web.json_response({"orders": plain(orders)})


async def ledger(request: web.Request) -> web.Response:
    """``GET /api/v1/credits/ledger?limit=N``: grants, holds, settles, releases, expiries, refunds."""
    caller = await authenticate(request)
    limit = _validated(LedgerQuery, dict(request.query)).limit
    lines = await request.app[SERVICES].credits.ledger(caller.account_id, limit=limit)
    return web.json_response({"entries": plain(lines)})


async def stripe_webhook(request: web.Request) -> web.Response:
    """``POST /webhooks/stripe``: verify ``Stripe-Signature`` on the raw body, act on the event once.

    400 for a bad signature (nothing processed); 200 for handled, duplicate and ignored events, so Stripe
    stops retrying; a failure inside the transaction rolls back and answers 500, so Stripe retries."""
    services = request.app[SERVICES]
    payload = await read_body(request, STRIPE_WEBHOOK_MAX_BYTES)
    try:
        event = services.payments.verify_webhook(payload, request.headers.get("Stripe-Signature"))
    except InvalidSignature as err:
        log.warning("Stripe webhook refused: %s", err.message)
        raise
    outcome = await services.billing.handle_event(event)
    log.info("Stripe event %s (%s): %s", event.id, event.type, outcome.outcome)
    return web.json_response({"received": True, "outcome": outcome.outcome, "order_id": outcome.order_id})


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title} · showme</title>
<style>
body{{font-family:system-ui,sans-serif;background:#0f1115;color:#e8e8ea;display:flex;min-height:100vh;margin:0;
align-items:center;justify-content:center}}
main{{max-width:32rem;padding:2rem;background:#181b22;border-radius:12px;text-align:center}}
h1{{font-size:1.4rem}} .code{{font:600 1.6rem ui-monospace,monospace;letter-spacing:.1em;background:#0f1115;
padding:.6rem 1rem;border-radius:8px;display:inline-block;user-select:all}} p{{color:#b5b7bd;line-height:1.5}}
</style></head><body><main><h1>{title}</h1>{body}</main></body></html>"""


def page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body),
        content_type="text/html",
        status=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


def _describe(fulfilment: Fulfilment, request: web.Request) -> str:
    billing = request.app[SERVICES].billing
    product = billing.product(fulfilment.product)
    if fulfilment.code:
        return (
            f"<p>Your {html.escape(product.name)} session code:</p>"
            f'<p class="code">{html.escape(fulfilment.code)}</p>'
            "<p>Redeem it in the Telegram or Discord bot with <code>/redeem CODE</code>, or with "
            "<code>POST /api/v1/redeem</code>. The hour starts when you redeem it. Keep this code: it works once.</p>"
        )
    if product.kind == "pack":
        return f"<p>{product.credits} credits have been added to your account.</p>"
    return (
        f"<p>Your {html.escape(product.name)} session is active: {product.images} images"
        f"{f' and {product.videos} videos' if product.videos else ''} for {product.duration_minutes} minutes.</p>"
    )


async def checkout_success(request: web.Request) -> web.Response:
    """``GET /checkout/success?session_id=cs_…``: fulfils the purchase when paid (so a slow webhook never
    leaves the buyer waiting) and shows what was bought, with the code of an anonymous plan purchase."""
    session_id = request.query.get("session_id", "")
    if not session_id.startswith("cs_"):
        return page("Missing checkout session", "<p>This link is incomplete.</p>", status=400)
    try:
        fulfilment = await request.app[SERVICES].billing.fulfil_checkout_session(session_id)
    except NotFound:
        return page("Unknown checkout", "<p>We could not find this purchase.</p>", status=404)
    except PaymentsNotConfigured as err:
        return page("Payments unavailable", f"<p>{html.escape(err.message)}</p>", status=503)
    except ShowmeError as err:
        return page(
            "Please refresh in a moment", f"<p>We could not check your payment yet: {html.escape(err.message)}</p>", 502
        )
    if fulfilment.status in ("fulfilled", "refunded"):
        title = "Thank you!" if fulfilment.status == "fulfilled" else "This purchase was refunded"
        return page(title, _describe(fulfilment, request) if fulfilment.status == "fulfilled" else "")
    if fulfilment.status == "payment_failed":
        return page("Payment failed", "<p>Your bank declined the payment. Nothing was charged.</p>")
    return page(
        "Payment processing",
        "<p>Your payment is still being confirmed by your bank. Your credits arrive automatically once it "
        "clears; reload this page to see them.</p>",
    )


async def checkout_cancel(request: web.Request) -> web.Response:
    """``GET /checkout/cancel``: the buyer left Stripe Checkout; nothing was charged."""
    return page("Checkout cancelled", "<p>Nothing was charged. You can start again whenever you like.</p>")


async def checkout_start(request: web.Request) -> web.StreamResponse:
    """``GET /checkout/start?t=…``: open a signed link from a chat bot: create the checkout session, then 303
    to Stripe's hosted page."""
    try:
        result = await request.app[SERVICES].billing.open_checkout_link(request.query.get("t", ""))
    except ShowmeError as err:
        return page("Payment link problem", f"<p>{html.escape(err.message)}</p>", status=err.status)
    raise web.HTTPSeeOther(result.url)
