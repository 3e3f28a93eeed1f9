"""The small error tree of showme's core. Each boundary (CLI, HTTP middleware, bots) translates it once.

Every error has a stable ``code`` (used in ``{"error": {"code", "message"}}``), a one-line ``message`` a
person can act on, and an HTTP ``status`` for the web boundary.
"""

from __future__ import annotations

from typing import Any


class ShowmeError(Exception):
    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle every subclass alike, whatever its ``__init__`` takes (errors raised in the writer
        process travel back to the caller pickled)."""
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[ShowmeError], args: tuple[Any, ...], state: dict[str, Any]) -> ShowmeError:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


def invalid_from_validation(err: Any) -> InvalidRequest:
    """The first problem of a pydantic ``ValidationError`` as one ``InvalidRequest`` naming the field."""
    first = err.errors()[0]
    name = ".".join(str(part) for part in first["loc"]) or "body"
    reason = {"missing": "is required", "extra_forbidden": "is not a known field"}.get(
        first["type"], first["msg"].lower()
    )
    return InvalidRequest(f"{name} {reason}", field=name)


class ConfigError(ShowmeError):
    """The configuration file or environment is invalid (names the key and the reason)."""

    code = "config_error"


class InvalidRequest(ShowmeError):
    """Bad input from a caller; ``field`` names the offending field when there is one."""

    code = "invalid_request"
    status = 400


class Unauthorized(ShowmeError):
    """No credentials, or credentials we do not know."""

    code = "unauthorized"
    status = 401


class Forbidden(ShowmeError):
    """Known credentials without the right (an API key lacking a scope)."""

    code = "forbidden"
    status = 403


class InvalidViewerToken(ShowmeError):
    """A viewer link that is forged, expired or for another conversation."""

    code = "invalid_token"
    status = 403


class PayloadTooLarge(ShowmeError):
    code = "body_too_large"
    status = 413


class NotFound(ShowmeError):
    code = "not_found"
    status = 404


class Conflict(ShowmeError):
    code = "conflict"
    status = 409


class InsufficientCredits(ShowmeError):
    """The account cannot pay for the request. ``needed`` and ``available`` are in ``unit``."""

    code = "insufficient_credits"
    status = 402

    def __init__(self, message: str, *, needed: int, available: int, unit: str = "credit") -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available
        self.unit = unit


class RateLimited(ShowmeError):
    """Too many requests from one account or address; ``retry_after_seconds`` says when to try again."""

    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PromptRefused(ShowmeError):
    """The prompt contains a blocked term; nothing was charged."""

    code = "prompt_refused"
    status = 422


class ProviderError(ShowmeError):
    """The image provider could not produce an output (base of the provider errors)."""

    code = "provider_error"
    status = 502


class ProviderNotConfigured(ProviderError):
    code = "provider_not_configured"
    status = 503


class ProviderAuthError(ProviderError):
    code = "provider_auth_failed"
    status = 502


class ProviderBillingError(ProviderError):
    code = "provider_billing"
    status = 502


class ProviderInputError(ProviderError):
    code = "provider_invalid_input"
    status = 422


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"
    status = 503


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"
    status = 503


class ModelFailed(ProviderError):
    """The model ran and failed; the message is the model's error text."""

    code = "model_failed"
    status = 502


class GenerationTimeout(ProviderError):
    code = "generation_timeout"
    status = 504


class GenerationCanceled(ProviderError):
    code = "generation_canceled"
    status = 409


class OutputDownloadFailed(ProviderError):
    code = "output_download_failed"
    status = 502


class PaymentsNotConfigured(ShowmeError):
    """Checkout or the payment webhook was used without STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET."""

    code = "payments_not_configured"
    status = 503


class PaymentProviderError(ShowmeError):
    """The payment provider refused or could not be reached."""

    code = "payment_provider_error"
    status = 502


class InvalidSignature(ShowmeError):
    """A webhook whose signature does not match its body (or whose timestamp is too old)."""

    code = "invalid_signature"
    status = 400


class PaymentNotCompleted(ShowmeError):
    """A purchase was claimed for a payment that has not succeeded (yet)."""

    code = "payment_not_completed"
    status = 402
