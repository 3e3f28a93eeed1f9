"""Payment providers: the protocol ``core.billing`` drives (Stripe is ``core.providers.stripe``).

Objects are plain dataclasses of the fields billing needs, in the provider's own vocabulary (checkout session,
payment intent, event), so billing never touches a vendor SDK object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CheckoutSession:
    """A hosted checkout page. ``payment_status``: ``paid`` | ``unpaid`` | ``no_payment_required``;
    ``status``: ``open`` | ``complete`` | ``expired``. ``amount_total`` is in the currency's smallest unit."""

    id: str
    url: str | None
    status: str
    payment_status: str
    payment_intent: str | None
    amount_total: int | None
    currency: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def paid(self) -> bool:
        """True when Stripe says the payment arrived (``payment_status`` ``paid`` or ``no_payment_required``)."""
        return self.payment_status in ("paid", "no_payment_required")

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckoutSession:
        """From Stripe's ``checkout.session`` JSON (an API response or ``event.data.object``)."""
        intent = data.get("payment_intent")
        if isinstance(intent, dict):  # expanded
            intent = intent.get("id")
        return cls(
            id=str(data["id"]),
            url=data.get("url"),
            status=str(data.get("status") or ""),
            payment_status=str(data.get("payment_status") or ""),
            payment_intent=intent,
            amount_total=data.get("amount_total"),
            currency=data.get("currency"),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        )


@dataclass(frozen=True)
class PaymentIntent:
    """``status``: ``succeeded`` when the money arrived (also ``processing``, ``requires_payment_method`` …)."""

    id: str
    status: str
    amount: int
    amount_received: int
    currency: str
    metadata: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PaymentIntent:
        """The fields billing needs from a Stripe PaymentIntent object."""
        return cls(
            id=str(data["id"]),
            status=str(data.get("status") or ""),
            amount=int(data.get("amount") or 0),
            amount_received=int(data.get("amount_received") or 0),
            currency=str(data.get("currency") or ""),
            metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        )


@dataclass(frozen=True)
class CheckoutRequest:
    """One line item of ``unit_amount`` (smallest currency unit) ``currency``, named ``name``."""

    order_id: str
    name: str
    description: str
    unit_amount: int
    currency: str
    success_url: str
    cancel_url: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class WebhookEvent:
    """A verified webhook event: ``id`` (``evt_…``), ``type`` and ``data.object`` as JSON."""

    id: str
    type: str
    object: dict[str, Any]
    created: int


class PaymentProvider(Protocol):
    name: str

    def check_ready(self) -> None:
        """Raise ``PaymentsNotConfigured`` when checkout cannot be used (missing secret key)."""
        ...

    async def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        """Create a hosted checkout page; the same ``order_id`` always yields the same session."""
        ...

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """Raises ``NotFound`` for an unknown id, ``PaymentProviderError`` when the provider fails."""
        ...

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        """Raises ``NotFound`` for an unknown id, ``PaymentProviderError`` when the provider fails."""
        ...

    def verify_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        """Check the signature over the raw ``payload``; raises ``InvalidSignature`` (also for a stale
        timestamp or malformed JSON) or ``PaymentsNotConfigured`` (no webhook secret)."""
        ...

    async def close(self) -> None:
        """Close the provider's HTTP client."""
        ...
