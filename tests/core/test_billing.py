"""Billing rules below HTTP: codes, concurrency of redemption, payments not configured."""

from __future__ import annotations

import asyncio

import pytest

from core.billing import CodeAlreadyRedeemed, UnknownCode, normalize_code
from core.errors import PaymentsNotConfigured, Unauthorized
from tools.services import Services


def test_codes_are_normalized_from_what_people_type() -> None:
    assert normalize_code("abcd efgh-jkmn") == "ABCD-EFGH-JKMN"
    assert normalize_code(" ABCDEFGHJKMN ") == "ABCD-EFGH-JKMN"
    assert normalize_code("ABCD-EFGH-JKM") is None  # too short
    assert normalize_code("ABCD-EFGH-JKM0") is None  # 0 is not in the alphabet (read as O)


async def test_a_code_redeems_once_under_concurrency(services: Services) -> None:
    accounts = [await services.accounts.create(f"a{i}") for i in range(8)]
    [code] = await services.billing.create_codes("flash")
    results = await asyncio.gather(*[services.billing.redeem(code, a.id) for a in accounts], return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, CodeAlreadyRedeemed) for r in results if isinstance(r, BaseException))
    quotas = [await services.credits.balance(a.id) for a in accounts]
    assert sum(1 for b in quotas if b.quotas) == 1
    with pytest.raises(UnknownCode):
        await services.billing.redeem("not a code", accounts[0].id)


async def test_checkout_without_stripe_keys_says_payments_are_not_set_up(services: Services) -> None:
    account = await services.accounts.create("a")
    with pytest.raises(PaymentsNotConfigured, match="STRIPE_SECRET_KEY"):
        await services.billing.checkout("pack:creator", account.id)
    with pytest.raises(Unauthorized):
        await services.billing.checkout("pack:creator", None)
    with pytest.raises(PaymentsNotConfigured, match="STRIPE_WEBHOOK_SECRET"):
        services.payments.verify_webhook(b"{}", "t=1,v1=00")
    assert await services.billing.orders() == []


async def test_expired_session_quota_is_written_off_once(services: Services) -> None:
    account = await services.accounts.create("a")
    [code] = await services.billing.create_codes("pro")
    await services.billing.redeem(code, account.id)
    services.clock.advance(minutes=60)  # type: ignore[attr-defined]
    assert await services.credits.expire_due() == 2
    assert await services.credits.expire_due() == 0
    ledger = await services.credits.ledger(account.id)
    assert sorted((e.unit, e.delta) for e in ledger if e.kind == "expire") == [("image", -15), ("video", -3)]
    assert await services.credits.invariant_violations() == []
