"""Stripe through stripe-python's ``StripeClient`` (async methods on an ``HTTPXClient``).

Calls (Stripe API reference, docs.stripe.com/api): ``v1.checkout.sessions.create_async`` with
``price_data`` line items and an idempotency key per order, ``v1.checkout.sessions.retrieve_async``,
``v1.payment_intents.retrieve_async``; webhooks are verified with ``stripe.WebhookSignature.verify_header``
(``Stripe-Signature: t=…,v1=…``, HMAC-SHA256 over ``"{t}.{raw body}"``, 300 s tolerance by default).
The API base is ``stripe.api_base`` from config, so tests and staging can point it at another server.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from core.config import StripeSettings
from core.errors import InvalidSignature, NotFound, PaymentProviderError, PaymentsNotConfigured
from core.providers.payments import CheckoutRequest, CheckoutSession, PaymentIntent, WebhookEvent


class StripePayments:
    name = "stripe"

    def __init__(self, settings: StripeSettings, secret_key: str | None, webhook_secret: str | None) -> None:
        self.settings = settings
        self._secret_key = secret_key
        self._webhook_secret = webhook_secret
        self._http: stripe.HTTPXClient | None = None
        self._client: stripe.StripeClient | None = None

    def check_ready(self) -> None:
        """Raise ``PaymentsNotConfigured`` without a STRIPE_SECRET_KEY."""
        if not self._secret_key:
            raise PaymentsNotConfigured("payments are not set up on this server (STRIPE_SECRET_KEY is not set)")

    def _stripe(self) -> stripe.StripeClient:
        self.check_ready()
        if self._client is None:
            assert self._secret_key is not None
            self._http = stripe.HTTPXClient(timeout=self.settings.request_timeout_seconds)
            self._client = stripe.StripeClient(
                self._secret_key,
                base_addresses={"api": self.settings.api_base.rstrip("/")},
                http_client=self._http,
                max_network_retries=self.settings.max_network_retries,
            )
        return self._client

    @staticmethod
    def _translate(err: stripe.StripeError, what: str) -> Exception:
        if isinstance(err, stripe.InvalidRequestError) and getattr(err, "code", None) == "resource_missing":
            return NotFound(f"{what} not found at Stripe")
        if isinstance(err, stripe.AuthenticationError):
            return PaymentProviderError("Stripe refused our API key (check STRIPE_SECRET_KEY)")
        if isinstance(err, stripe.APIConnectionError):
            return PaymentProviderError("Stripe could not be reached; try again in a moment")
        return PaymentProviderError(f"Stripe error: {err.user_message or type(err).__name__}")

    async def create_checkout_session(self, request: CheckoutRequest) -> CheckoutSession:
        """Create a one-time Checkout Session (``POST /v1/checkout/sessions``); raises ``PaymentProviderError``."""
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency,
                        "unit_amount": request.unit_amount,
                        "product_data": {"name": request.name, "description": request.description},
                    },
                }
            ],
            "client_reference_id": request.order_id,
            "metadata": request.metadata,
            "payment_intent_data": {"metadata": request.metadata},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        try:
            session = await self._stripe().v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"showme-checkout-{request.order_id}"},
            )
        except stripe.StripeError as err:
            raise self._translate(err, "checkout session") from err
        return CheckoutSession.from_json(session.to_dict())

    async def retrieve_checkout_session(self, session_id: str) -> CheckoutSession:
        """A Checkout Session by id; raises ``NotFound`` or ``PaymentProviderError``."""
        try:
            session = await self._stripe().v1.checkout.sessions.retrieve_async(session_id)
        except stripe.StripeError as err:
            raise self._translate(err, f"checkout session {session_id}") from err
        return CheckoutSession.from_json(session.to_dict())

    async def retrieve_payment_intent(self, payment_intent_id: str) -> PaymentIntent:
        """A PaymentIntent by id; raises ``NotFound`` or ``PaymentProviderError``."""
        try:
            intent = await self._stripe().v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.StripeError as err:
            raise self._translate(err, f"payment intent {payment_intent_id}") from err
        return PaymentIntent.from_json(intent.to_dict())

    def verify_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        """The event of a ``Stripe-Signature``-signed webhook body; raises ``InvalidSignature``."""
        if not self._webhook_secret:
            raise PaymentsNotConfigured("Stripe webhooks are not set up (STRIPE_WEBHOOK_SECRET is not set)")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidSignature("webhook body is not UTF-8") from err
        if not signature_header:
            raise InvalidSignature("missing Stripe-Signature header")
        try:
            stripe.WebhookSignature.verify_header(
                text, signature_header, self._webhook_secret, tolerance=self.settings.webhook_tolerance_seconds
            )
        except stripe.SignatureVerificationError as err:
            raise InvalidSignature(f"Stripe signature check failed: {err.user_message or err}") from err
        except (ValueError, IndexError) as err:  # a header without t= raises IndexError inside stripe-python
            raise InvalidSignature("malformed Stripe-Signature header") from err
        try:
            data = json.loads(text)
            obj = data["data"]["object"]
            return WebhookEvent(id=str(data["id"]), type=str(data["type"]), object=obj, created=int(data["created"]))
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidSignature("signed body is not a Stripe event") from err

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._http is not None:
            await self._http.close_async()  # type: ignore[no-untyped-call]
            self._http = None
            self._client = None
