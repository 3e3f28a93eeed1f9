"""The sentences chat users read: balances, prices, progress, failures and errors (the adapters only render)."""

from __future__ import annotations

from collections.abc import Mapping

from core.billing import Product
from core.catalog_settings import VIDEO_KINDS
from core.config import ModelSpec
from core.credits import Balance
from core.errors import (
    Conflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PaymentProviderError,
    PaymentsNotConfigured,
    PromptRefused,
    ProviderError,
    ShowmeError,
)
from core.generation import JobView


class UserBusy(ShowmeError):
    """The user's queue is full (one running job plus ``max_queued`` waiting)."""

    code = "queue_full"
    status = 429


WORKING = {
    "image": "🎨 Making your picture with {model}…",
    "video": "🎬 Making your video with {model} (about a minute)…",
    "image_to_video": "🎬 Animating your picture (about a minute)…",
    "upscale": "⬆️ Upscaling your picture…",
    "remove_background": "✂️ Removing the background…",
    "restore_face": "✨ Restoring the faces…",
}


def working_text(job: JobView) -> str:
    """What a chat shows while ``job`` runs."""
    return WORKING.get(job.kind, WORKING["image"]).format(model=job.model)


def balance_text(balance: Balance) -> str:
    """The balance as a chat user reads it: credits, then each session quota with minutes left."""
    lines = [f"You have {balance.credits} credit{'s' if balance.credits != 1 else ''}."]
    for quota in balance.quotas:
        unit = f"{quota.unit}{'s' if quota.remaining != 1 else ''}"
        left = f" ({quota.minutes_left} min left)" if quota.minutes_left is not None else ""
        lines.append(f"Session: {quota.remaining} {unit}{left}.")
    return "\n".join(lines)


def prices_text(catalog: Mapping[str, ModelSpec]) -> str:
    """Each model's price in credits, pictures then videos and edits, in two lines."""
    models = catalog.items()
    images = ", ".join(f"{name} {spec.price}" for name, spec in models if spec.kind == "image")
    others = ", ".join(f"{spec.kind.replace('_', ' ')} {spec.price}" for _, spec in models if spec.kind != "image")
    return f"Credits per image: {images}." + (f"\nVideos and edits: {others}." if others else "")


def product_label(product: Product) -> str:
    """A pack or plan as a button label: name, what it gives, price."""
    price = f"{product.price:,} {product.currency.upper()}"
    if product.kind == "pack":
        return f"{product.name}: {product.credits} credits · {price}"
    videos = f" + {product.videos} videos" if product.videos else ""
    return f"{product.name} hour: {product.images} images{videos} · {price}"


def job_failed_text(job: JobView) -> str:
    """The sentence for a failed picture, video or edit (it was not charged)."""
    noun = "video" if job.kind in VIDEO_KINDS else "picture"
    reason = job.error or f"the image service did not return a {noun}"
    return f"Sorry, that {noun} failed: {reason}. You were not charged."


def error_text(err: Exception) -> str:
    """The sentence a chat user reads for an error (never a traceback)."""
    if isinstance(err, InsufficientCredits):
        if err.unit == "credit":
            return (
                f"Not enough credits: this picture costs {err.needed} and you have {err.available}. "
                "Buy credits or an hourly session below."
            )
        return err.message
    if isinstance(err, PromptRefused):
        return f"I can't make that picture: {err.message}. Try describing something else."
    if isinstance(err, ProviderError):
        return (
            "The image service is unavailable right now, so nothing was made and you were not charged. "
            "Please try again in a minute."
        )
    if isinstance(err, PaymentsNotConfigured):
        return "Buying is not available on this server yet."
    if isinstance(err, PaymentProviderError):
        return "The payment service is not answering right now; please try again in a minute."
    if isinstance(err, InvalidRequest | NotFound | Conflict | UserBusy):
        return err.message[:1].upper() + err.message[1:]
    if isinstance(err, ShowmeError):
        return f"Something went wrong: {err.message}"
    return "Something went wrong on our side. It has been logged; please try again."
