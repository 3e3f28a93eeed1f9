"""Settings of the second image provider, of failover between providers, and of the cost and margin report."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from core.catalog_settings import Section

#: The providers a catalog model may list, in the order it lists them (``models.<name>.providers``).
PROVIDER_NAMES: tuple[str, ...] = ("replicate", "hf")


class HuggingFaceSettings(Section):
    """Hugging Face Inference Providers (huggingface.co/docs/inference-providers): text-to-image through
    ``huggingface_hub``'s ``AsyncInferenceClient``, one request per image, answered with the image's bytes."""

    base_url: str = Field(default="https://router.huggingface.co", description="the Inference Providers router")
    inference_provider: str = Field(default="hf-inference", description="which provider behind the router runs it")
    timeout_seconds: float = Field(default=60, gt=0, description="one image's request, connect to last byte")
    megapixels: float = Field(default=1.0, gt=0, le=4, description="output size; width and height are multiples of 16")


class FailoverSettings(Section):
    """When a provider fails before any output, the job moves to the model's next provider; a provider that keeps
    failing is skipped for a while (a circuit breaker: closed → open after ``failure_threshold`` failures in a
    row → half-open after ``open_seconds``, where one probe call closes it again or reopens it)."""

    failure_threshold: int = Field(default=5, ge=1, le=100)
    open_seconds: float = Field(default=30, gt=0, le=3600)


class ReportSettings(Section):
    """``showme report``: revenue in other currencies counts toward the USD margin at these rates."""

    usd_rates: dict[str, Decimal] = Field(
        default_factory=lambda: {"inr": Decimal("0.012")},
        description="USD per unit of a currency, e.g. {inr: 0.012}; usd is always 1",
    )
