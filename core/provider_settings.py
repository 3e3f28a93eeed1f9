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


class TrainingSettings(Section):
    """Custom models (FLUX LoRA) trained on an account's photos on Replicate (``core.training``)."""

    owner: str | None = Field(default=None, description="the Replicate user or organization that owns trained models")
    trainer: str = Field(
        default="ostris/flux-dev-lora-trainer:b6af14222e6bd9be257cbc1ea4afda3cd0503e1133083b9d1de0364d8568e6ef",
        description="the FLUX LoRA trainer, owner/name:version",
    )
    base_models: list[str] = Field(default_factory=lambda: ["flux_dev"], description="models a LoRA is trained on")
    price: int = Field(default=50, ge=0, description="credits for one training, charged when it succeeds")
    generation_price: int = Field(default=2, ge=0, description="credits per image of a trained model")
    steps: int = Field(default=1000, ge=100, le=6000)
    min_images: int = Field(default=10, ge=1)
    max_images: int = Field(default=50, ge=1, le=200)
    hardware: str = Field(default="gpu-t4", description="hardware of the destination model (Replicate replaces it)")
    timeout_seconds: float = Field(default=7200, gt=0, description="cancel and refund a training still running")
    cost_per_second: Decimal = Field(default=Decimal("0.001528"), ge=0, description="USD per second of training")
