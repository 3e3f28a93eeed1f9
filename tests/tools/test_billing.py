"""Selling credits through the real server: stripe-python against the fake Stripe API, events signed with
Stripe's real signature scheme, generations against the fake Replicate."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import func, select

from storage.models import CreditGrant, LedgerEntry, Order, ProcessedEvent
from tests.fakes.stripe import FakeStripe
from tests.tools.conftest import Server


async def send_event(server: Server, body: str, signature: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature or FakeStripe.sign(body)}
    return await server.client.post("/webhooks/stripe", data=body.encode(), headers=headers)


async def start_checkout(server: Server, product: str, *, auth: bool = True) -> dict[str, Any]:
    response = await server.client.post(
        "/api/v1/checkout", json={"product": product}, headers=server.auth if auth else {}
    )
    assert response.status == 201, await response.text()
    return dict(await response.json())


async def count(server: Server, stmt: Any) -> int:
    async with server.services.db.read() as session:
        return int(await session.scalar(stmt) or 0)


async def test_pricing_is_public_and_lists_the_catalog(server: Server) -> None:
    response = await server.client.get("/api/v1/pricing")
    assert response.status == 200
    data = await response.json()
    packs = {p["id"]: p for p in data["packs"]}
    assert packs["pack:creator"] == {
        "id": "pack:creator",
        "name": "Creator",
        "price": "29.99",
        "currency": "usd",
        "unit_amount": 2999,
        "credits": 200,
        "description": "200 showme credits (never expire)",
    }
    plans = {p["id"]: p for p in data["plans"]}
    assert plans["plan:flash"]["unit_amount"] == 10000 and plans["plan:flash"]["currency"] == "inr"
    assert (plans["plan:flash"]["images"], plans["plan:flash"]["videos"]) == (8, 1)
    assert plans["plan:flash"]["models"] == ["flux_schnell", "sdxl"]
    models = {m["id"]: m for m in data["models"]}
    assert models["flux_pro"]["credits_per_image"] == models["flux_pro"]["credits"] == 5
    kinds = {m["id"]: (m["kind"], m["unit"], m["credits"]) for m in data["models"]}
    assert kinds["seedance_lite"] == ("video", "video", 5)
    assert kinds["seedance_animate"] == ("image_to_video", "video", 5)
    assert kinds["real_esrgan"] == ("upscale", "image", 2)
    assert kinds["rembg"] == ("remove_background", "image", 1)
    assert kinds["codeformer"] == ("restore_face", "image", 2)
    assert "credits_per_image" not in models["seedance_lite"]
    assert data["starter_credits"] == 10


async def test_checkout_creates_a_stripe_session_with_an_idempotency_key(server: Server) -> None:
    result = await start_checkout(server, "pack:creator")
    assert result["url"].startswith(server.stripe.base_url + "/pay/cs_test_")
    create = next(r for r in server.stripe.requests if r["method"] == "POST")
    assert create["headers"]["Idempotency-Key"] == f"showme-checkout-{result['order_id']}"
    assert create["headers"]["Stripe-Version"].startswith("20")
    session = server.stripe.sessions[result["checkout_session_id"]]
    assert session["amount_total"] == 2999 and session["currency"] == "usd"
    assert session["metadata"] == {
        "order_id": result["order_id"],
        "product": "pack:creator",
        "account_id": str(server.account_id),
    }
    assert session["_intent_metadata"]["account_id"] == str(server.account_id)
    assert session["success_url"].endswith("/checkout/success?session_id={CHECKOUT_SESSION_ID}")
    orders = (await (await server.client.get("/api/v1/orders", headers=server.auth)).json())["orders"]
    assert [(o["id"], o["status"], o["amount"]) for o in orders] == [(result["order_id"], "open", 2999)]


async def test_checkout_refusals(server: Server) -> None:
    response = await server.client.post("/api/v1/checkout", json={"product": "pack:huge"}, headers=server.auth)
    assert response.status == 400
    error = (await response.json())["error"]
    assert "product" in error["message"] and "pack:creator" in error["message"]
    response = await server.client.post("/api/v1/checkout", json={"product": "pack:creator"})
    assert response.status == 401
    response = await server.client.post("/api/v1/checkout", json={"product": "plan:flash", "x": 1})
    assert response.status == 400 and "x" in (await response.json())["error"]["message"]
    response = await server.client.post(
        "/api/v1/checkout", json={"product": "plan:flash"}, headers={"Authorization": "Bearer sm_wrong"}
    )
    assert response.status == 401
    server.stripe.fail_next_create = True
    response = await server.client.post("/api/v1/checkout", json={"product": "pack:starter"}, headers=server.auth)
    assert response.status == 502
    orders = await server.services.billing.orders(account_id=server.account_id)
    assert [o.status for o in orders] == ["checkout_failed"]


async def test_one_purchase_delivered_ten_times_concurrently_plus_success_page_grants_once(server: Server) -> None:
    before = await server.balance()
    result = await start_checkout(server, "pack:creator")
    session = server.stripe.pay(result["checkout_session_id"])
    completed = FakeStripe.event("checkout.session.completed", session)
    # The same event ten times at once, a second event about the same session, and the success page.
    succeeded = FakeStripe.event("checkout.session.async_payment_succeeded", session)
    responses = await asyncio.gather(
        *[send_event(server, completed) for _ in range(10)],
        send_event(server, succeeded),
        server.client.get(f"/checkout/success?session_id={result['checkout_session_id']}"),
    )
    assert [r.status for r in responses] == [200] * 12
    outcomes = sorted([(await r.json())["outcome"] for r in responses[:11]])
    assert outcomes.count("duplicate") == 9
    assert outcomes.count("fulfilled") <= 1  # the success page may have won
    page = await responses[11].text()
    assert "Thank you" in page and "200 credits" in page
    assert await server.balance() == before + 200
    assert await count(server, select(func.count()).select_from(CreditGrant).where(CreditGrant.category == "paid")) == 1
    assert await count(server, select(func.count()).select_from(ProcessedEvent)) == 2
    grants = [e for e in await server.services.credits.ledger(server.account_id) if e.kind == "grant"]
    assert any(e.amount == 200 and "Creator pack" in (e.note or "") for e in grants)
    # Later redeliveries and success-page visits change nothing.
    assert (await (await send_event(server, completed)).json())["outcome"] == "duplicate"
    page = await server.client.get(f"/checkout/success?session_id={result['checkout_session_id']}")
    assert page.status == 200 and await server.balance() == before + 200
    assert await server.services.credits.invariant_violations() == []
    order = (await server.services.billing.orders(account_id=server.account_id))[0]
    assert order.status == "fulfilled" and order.payment_intent_id == session["payment_intent"]


async def test_tampered_stale_or_missing_signatures_are_refused_and_grant_nothing(server: Server) -> None:
    before = await server.balance()
    result = await start_checkout(server, "pack:professional")
    session = server.stripe.pay(result["checkout_session_id"])
    body = FakeStripe.event("checkout.session.completed", session)
    tampered = body.replace('"amount_total": 5999', '"amount_total": 1')
    assert tampered != body
    cases = [
        (tampered, FakeStripe.sign(body)),
        (body, FakeStripe.sign(body, timestamp=int(time.time()) - 301)),
        (body, FakeStripe.sign(body, secret="whsec_someone_else")),
        (body, "t=123"),
        (body, "garbage"),
    ]
    for payload, signature in cases:
        response = await send_event(server, payload, signature)
        assert response.status == 400, signature
        assert (await response.json())["error"]["code"] == "invalid_signature"
    response = await server.client.post("/webhooks/stripe", data=body.encode())
    assert response.status == 400
    assert await server.balance() == before
    assert await count(server, select(func.count()).select_from(ProcessedEvent)) == 0
    # The genuine delivery still works afterwards.
    assert (await (await send_event(server, body)).json())["outcome"] == "fulfilled"
    assert await server.balance() == before + 500


async def test_delayed_payment_out_of_order_and_failure(server: Server) -> None:
    before = await server.balance()
    # Delayed method: completed (unpaid) → nothing; success page says processing; succeeded → grant.
    first = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(first["checkout_session_id"], delayed=True)
    response = await send_event(server, FakeStripe.event("checkout.session.completed", session))
    assert (await response.json())["outcome"] == "awaiting_payment"
    page = await server.client.get(f"/checkout/success?session_id={first['checkout_session_id']}")
    assert "still being confirmed" in await page.text()
    assert await server.balance() == before
    paid = server.stripe.settle_delayed(first["checkout_session_id"])
    response = await send_event(server, FakeStripe.event("checkout.session.async_payment_succeeded", paid))
    assert (await response.json())["outcome"] == "fulfilled"
    assert await server.balance() == before + 50
    # Out of order: the success event arrives before the (stale, unpaid) completed event.
    second = await start_checkout(server, "pack:starter")
    unpaid = server.stripe.pay(second["checkout_session_id"], delayed=True)
    paid = server.stripe.settle_delayed(second["checkout_session_id"])
    assert (
        await (await send_event(server, FakeStripe.event("checkout.session.async_payment_succeeded", paid))).json()
    )["outcome"] == "fulfilled"
    response = await send_event(server, FakeStripe.event("checkout.session.completed", unpaid))
    assert (await response.json())["outcome"] == "awaiting_payment"
    assert await server.balance() == before + 100
    orders = {o.id: o.status for o in await server.services.billing.orders(account_id=server.account_id)}
    assert orders[second["order_id"]] == "fulfilled"
    # Failed delayed payment: nothing granted, the order says so.
    third = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(third["checkout_session_id"], delayed=True)
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    failed = server.stripe.settle_delayed(third["checkout_session_id"], succeeded=False)
    response = await send_event(server, FakeStripe.event("checkout.session.async_payment_failed", failed))
    assert (await response.json())["outcome"] == "payment_failed"
    assert await server.balance() == before + 100
    page = await server.client.get(f"/checkout/success?session_id={third['checkout_session_id']}")
    assert "Payment failed" in await page.text()


async def test_events_for_sessions_we_did_not_create_are_acknowledged_and_ignored(server: Server) -> None:
    foreign = {"id": "cs_test_foreign", "object": "checkout.session", "payment_status": "paid", "metadata": {}}
    response = await send_event(server, FakeStripe.event("checkout.session.completed", foreign))
    assert response.status == 200 and (await response.json())["outcome"] == "ignored"
    response = await send_event(server, FakeStripe.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert response.status == 200 and (await response.json())["outcome"] == "ignored"
    page = await server.client.get("/checkout/success?session_id=cs_test_unknown")
    assert page.status == 404


async def generate(server: Server, prompt: str, model: str = "flux_schnell") -> Any:
    return await server.client.post(
        "/api/v1/generations", headers=server.auth, json={"prompt": prompt, "model": model, "wait_seconds": 10}
    )


async def spend(server: Server, credits: int) -> None:
    """Spend exactly ``credits`` with as few generations as possible (flux_dev costs 2 per image)."""
    while credits > 0:
        outputs = min(4, credits // 2) or 1
        model = "flux_dev" if credits >= 2 else "flux_schnell"
        response = await server.client.post(
            "/api/v1/generations",
            headers=server.auth,
            json={"prompt": f"spend {credits}", "model": model, "num_outputs": outputs, "wait_seconds": 10},
        )
        job = (await response.json())["job"]
        assert job["status"] == "succeeded", job
        credits -= job["charged"]


async def test_hourly_plan_end_to_end_paid_code_redeem_quota_then_credits_then_expiry(server: Server) -> None:
    services = server.services
    # Bought without an account: paid through the webhook, the code shows on the success page.
    result = await start_checkout(server, "plan:flash", auth=False)
    session = server.stripe.pay(result["checkout_session_id"])
    assert session["amount_total"] == 10000 and session["currency"] == "inr"
    response = await send_event(server, FakeStripe.event("checkout.session.completed", session))
    assert (await response.json())["outcome"] == "fulfilled"
    page = await (await server.client.get(f"/checkout/success?session_id={result['checkout_session_id']}")).text()
    [order] = await services.billing.orders()
    assert order.code is not None and order.account_id is None and order.code in page
    # Redeemed by an account: 8 images and 1 video for an hour.
    credits_before = await server.balance()
    response = await server.client.post("/api/v1/redeem", headers=server.auth, json={"code": order.code.lower()})
    assert response.status == 200, await response.text()
    data = await response.json()
    assert data["activation"]["images"] == 8 and data["activation"]["models"] == ["flux_schnell", "sdxl"]
    quotas = {q["unit"]: q for q in data["balance"]["quotas"]}
    assert quotas["image"]["remaining"] == 8 and quotas["image"]["minutes_left"] == 60
    assert quotas["video"]["remaining"] == 1
    # A code works once; unknown codes say so.
    again = await server.client.post("/api/v1/redeem", headers=server.auth, json={"code": order.code})
    assert again.status == 409 and "already redeemed" in (await again.json())["error"]["message"]
    unknown = await server.client.post("/api/v1/redeem", headers=server.auth, json={"code": "AAAA-BBBB-CCCC"})
    assert unknown.status == 404 and (await unknown.json())["error"]["code"] == "unknown_code"
    # A model the plan does not cover is paid in credits, leaving the session alone.
    response = await generate(server, "a granite kitchen island", model="flux_dev")
    assert response.status == 200 and (await response.json())["job"]["unit"] == "credit"
    assert await server.balance() == credits_before - 2
    # Eight images from the session without touching credits, the ninth from credits.
    for i in range(8):
        response = await generate(server, f"kitchen number {i}")
        job = (await response.json())["job"]
        assert job["status"] == "succeeded" and job["unit"] == "image", job
    assert await server.balance() == credits_before - 2
    balance = await services.credits.balance(server.account_id)
    assert {q.unit: q.remaining for q in balance.quotas} == {"image": 0, "video": 1}  # used up, still shown
    response = await generate(server, "kitchen number nine")
    assert (await response.json())["job"]["unit"] == "credit"
    assert await server.balance() == credits_before - 3
    # After the hour the rest of the session (the video) is gone, and the ledger says so.
    server.services.clock.advance(minutes=61)  # type: ignore[attr-defined]
    credits = await (await server.client.get("/api/v1/credits", headers=server.auth)).json()
    assert credits["quotas"] == [] and credits["credits"] == credits_before - 3
    entries = (await (await server.client.get("/api/v1/credits/ledger", headers=server.auth)).json())["entries"]
    expiries = [e for e in entries if e["kind"] == "expire"]
    assert [(e["unit"], e["amount"], e["delta"]) for e in expiries] == [("video", 1, -1)]
    assert {e["kind"] for e in entries} >= {"grant", "hold", "settle", "expire"}
    assert await services.credits.invariant_violations() == []


async def test_failed_generation_during_a_session_returns_the_image_to_the_quota(server: Server) -> None:
    [code] = await server.services.billing.create_codes("flash_lite")
    await server.services.billing.redeem(code, server.account_id)
    credits_before = await server.balance()
    response = await generate(server, "FAILME granite")
    job = (await response.json())["job"]
    assert job["status"] == "failed" and job["unit"] == "image" and job["charge_state"] == "released"
    balance = await server.services.credits.balance(server.account_id)
    assert [(q.unit, q.remaining) for q in balance.quotas] == [("image", 3)]
    assert balance.credits == credits_before
    kinds = [e.kind for e in await server.services.credits.ledger(server.account_id) if e.unit == "image"]
    assert kinds == ["release", "hold", "grant"]


async def test_plan_bought_with_an_account_activates_at_once(server: Server) -> None:
    result = await start_checkout(server, "plan:pro")
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    balance = await server.services.credits.balance(server.account_id)
    assert {q.unit: q.remaining for q in balance.quotas} == {"image": 15, "video": 3}
    assert all(q.minutes_left == 60 for q in balance.quotas)
    assert (await server.services.billing.orders())[0].code is None


async def test_purchase_with_payment_intent_checks_and_grants_once(server: Server) -> None:
    before = await server.balance()
    mine = {"account_id": str(server.account_id)}
    intent = server.stripe.payment_intent(2999, "usd", mine)
    body = {"amount": 200, "paymentIntentId": intent["id"]}
    first, second = await asyncio.gather(
        server.client.post("/api/v1/credits/purchase", headers=server.auth, json=body),
        server.client.post("/api/v1/credits/purchase", headers=server.auth, json=body),
    )
    assert first.status == second.status == 200
    granted = [(await r.json())["fulfilment"]["granted"] for r in (first, second)]
    assert sorted(granted) == [False, True]
    assert await server.balance() == before + 200
    # Refusals: another account's payment, an unfinished payment, a price that does not match, no such pack.
    other = server.stripe.payment_intent(2999, "usd", {"account_id": "999999"})
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 200, "paymentIntentId": other["id"]}
    )
    assert response.status == 403
    pending = server.stripe.payment_intent(2999, "usd", mine, status="processing")
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 200, "paymentIntentId": pending["id"]}
    )
    assert response.status == 402 and (await response.json())["error"]["code"] == "payment_not_completed"
    cheap = server.stripe.payment_intent(999, "usd", mine)
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 200, "paymentIntentId": cheap["id"]}
    )
    error = (await response.json())["error"]
    assert response.status == 400 and "does not match" in error["message"]
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 201, "paymentIntentId": cheap["id"]}
    )
    assert response.status == 400 and "amount" in (await response.json())["error"]["message"]
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 200, "paymentIntentId": "pi_missing"}
    )
    assert response.status == 404
    response = await server.client.post(
        "/api/v1/credits/purchase", headers=server.auth, json={"amount": 200, "paymentIntentId": "nope"}
    )
    assert response.status == 400 and "paymentIntentId" in (await response.json())["error"]["message"]
    assert await server.balance() == before + 200


async def test_checkout_payment_claimed_again_through_the_purchase_api_grants_once(server: Server) -> None:
    before = await server.balance()
    result = await start_checkout(server, "pack:creator")
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    response = await server.client.post(
        "/api/v1/credits/purchase",
        headers=server.auth,
        json={"amount": 200, "paymentIntentId": session["payment_intent"]},
    )
    assert response.status == 200 and (await response.json())["fulfilment"]["granted"] is False
    assert await server.balance() == before + 200


async def test_charge_refunded_takes_back_what_is_left_never_below_zero(server: Server) -> None:
    services = server.services
    result = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    starter = await server.balance() - 50
    # Spend 45 of the pack's 50 credits first (starter credits burn first, then the pack).
    await spend(server, starter + 45)
    assert await server.balance() == 5
    # Half refunded: half of the pack (25) is due back, only 5 are left: take 5, never below zero.
    half = FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"], amount=500))
    assert (await (await send_event(server, half)).json())["outcome"] == "refunded"
    assert await server.balance() == 0
    assert (await (await send_event(server, half)).json())["outcome"] == "duplicate"
    # The rest refunded: nothing more to take; the grant is voided so later releases cannot revive it.
    full = FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"]))
    await send_event(server, full)
    assert await server.balance() == 0
    refunds = [e for e in await services.credits.ledger(server.account_id) if e.kind == "refund"]
    assert [(e.amount, e.delta) for e in refunds] == [(5, -5)]
    [order] = await services.billing.orders(account_id=server.account_id)
    assert order.status == "refunded" and order.refunded_amount == 999
    assert await services.credits.invariant_violations() == []
    async with services.db.read() as s:
        voided = await s.scalar(select(CreditGrant.voided_at).where(CreditGrant.source_ref == f"order:{order.id}"))
    assert voided is not None


async def test_refunded_anonymous_plan_voids_its_unredeemed_code(server: Server) -> None:
    result = await start_checkout(server, "plan:flash_lite", auth=False)
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    [order] = await server.services.billing.orders()
    await send_event(server, FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"])))
    response = await server.client.post("/api/v1/redeem", headers=server.auth, json={"code": order.code})
    assert response.status == 409 and "refunded" in (await response.json())["error"]["message"]


async def test_order_rows_and_ledger_are_consistent_after_everything(server: Server) -> None:
    result = await start_checkout(server, "pack:creator")
    session = server.stripe.pay(result["checkout_session_id"])
    await asyncio.gather(
        *[send_event(server, FakeStripe.event("checkout.session.completed", session)) for _ in range(5)]
    )
    assert await count(server, select(func.count()).select_from(Order)) == 1
    assert (
        await count(
            server,
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.op_key == f"order:{result['order_id']}"),
        )
        == 1
    )


async def test_signed_checkout_links_from_chat_create_the_session_when_opened(server: Server) -> None:
    billing = server.services.billing
    link = billing.checkout_link(server.account_id, "pack:creator", "discord")
    assert server.stripe.sessions == {}
    path = link.split("://", 1)[1].split("/", 1)[1]
    response = await server.client.get("/" + path, allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith(server.stripe.base_url + "/pay/")
    [order] = await billing.orders(account_id=server.account_id)
    assert order.source == "discord" and order.product == "pack:creator"
    forged = path.replace("t=", "t=x")
    assert (await server.client.get("/" + forged, allow_redirects=False)).status == 400
    server.services.clock.advance(hours=2)  # type: ignore[attr-defined]
    expired = await server.client.get("/" + path, allow_redirects=False)
    assert expired.status == 400 and "expired" in await expired.text()


async def _grant_of(server: Server, order_id: str) -> Any:
    async with server.services.db.read() as s:
        return (await s.execute(select(CreditGrant).where(CreditGrant.source_ref == f"order:{order_id}"))).scalar_one()


async def test_refund_while_a_job_holds_the_grant_takes_back_what_the_job_releases(server: Server) -> None:
    result = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    await spend(server, await server.balance() - 50 + 20)  # the starter credits, then 20 of the pack's 50
    server.fake.model_durations["black-forest-labs/flux-dev"] = 1.5
    server.fake.failing_models.add("black-forest-labs/flux-dev")
    response = await server.client.post(
        "/api/v1/generations", headers=server.auth,
        json={"prompt": "a held job", "model": "flux_dev", "num_outputs": 4, "wait_seconds": 0},
    )  # fmt: skip
    job = (await response.json())["job"]
    assert response.status == 202 and job["charged"] == 0
    assert (await _grant_of(server, result["order_id"])).remaining == 22  # 50 - 20 spent - 8 held
    # Half refunded: the customer keeps 25 of the 50; 22 can be taken now, 3 are held by the running job.
    half = FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"], amount=500))
    assert (await (await send_event(server, half)).json())["outcome"] == "refunded"
    grant = await _grant_of(server, result["order_id"])
    assert (grant.remaining, grant.refund_owed) == (0, 3)
    done = await server.services.generation.wait(job["id"], timeout=10)
    assert done.status == "failed" and done.charged == 0
    grant = await _grant_of(server, result["order_id"])
    # 25 kept - 20 spent = 5, not the 8 the job held: the release paid the 3 owed first.
    assert (grant.remaining, grant.refund_owed) == (5, 0)
    assert await server.balance() == 5
    refunds = [e for e in await server.services.credits.ledger(server.account_id) if e.kind == "refund"]
    assert sorted(e.amount for e in refunds) == [3, 22]
    assert await server.services.credits.invariant_violations() == []


async def test_refund_before_the_order_is_fulfilled_is_applied_when_it_is(server: Server) -> None:
    before = await server.balance()
    result = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(result["checkout_session_id"])
    # Stripe does not promise event order: the refund arrives before checkout.session.completed.
    early = FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"], amount=500))
    assert (await (await send_event(server, early)).json())["outcome"] == "refund_pending"
    assert await server.balance() == before
    outcome = await (await send_event(server, FakeStripe.event("checkout.session.completed", session))).json()
    assert outcome["outcome"] == "fulfilled"
    assert await server.balance() == before + 25  # half of the 50-credit pack
    [order] = await server.services.billing.orders(account_id=server.account_id)
    assert (order.status, order.refunded_amount) == ("fulfilled", 500)
    # The rest refunded later, the usual way: nothing of the pack is left.
    full = FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"]))
    assert (await (await send_event(server, full)).json())["outcome"] == "refunded"
    assert await server.balance() == before
    assert await server.services.credits.invariant_violations() == []


async def test_full_refund_before_fulfilment_leaves_nothing_and_says_nothing_was_added(server: Server) -> None:
    before = await server.balance()
    told: list[Any] = []

    async def listener(fulfilment: Any) -> None:
        told.append(fulfilment)

    server.services.billing.subscribe(listener)
    result = await start_checkout(server, "pack:starter")
    session = server.stripe.pay(result["checkout_session_id"])
    await send_event(server, FakeStripe.event("charge.refunded", server.stripe.refund(session["payment_intent"])))
    await send_event(server, FakeStripe.event("checkout.session.completed", session))
    page = await server.client.get(f"/checkout/success?session_id={result['checkout_session_id']}")
    assert "refunded" in (await page.text())
    assert await server.balance() == before
    [order] = await server.services.billing.orders(account_id=server.account_id)
    assert order.status == "refunded"
    assert told == []
