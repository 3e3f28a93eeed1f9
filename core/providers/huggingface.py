"""Hugging Face Inference Providers: the second image provider, through ``huggingface_hub``'s
``AsyncInferenceClient.text_to_image``.

Wire format (huggingface.co/docs/inference-providers/tasks/text-to-image): ``POST
<router>/<inference provider>/models/<model id>`` with ``{"inputs": prompt, "parameters": {width, height, seed,
…}}`` and ``Authorization: Bearer <HF_TOKEN>``, answered with the image's bytes. It was chosen over fal because it
serves the same open models as our Replicate catalog (FLUX.1 [schnell] and [dev], SDXL) from the same weights,
so a failed-over picture looks like the one the caller would have had, and because one synchronous request per
image needs no queue to poll: a prediction here is finished when ``create`` returns, and there is nothing to
resume after a restart.
"""

from __future__ import annotations

import asyncio
import io
import math
import uuid
from pathlib import Path
from typing import Any

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError, InferenceTimeoutError
from PIL import Image

from core.errors import (
    ProviderAuthError,
    ProviderBillingError,
    ProviderError,
    ProviderInputError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from core.provider_settings import HuggingFaceSettings
from core.providers import PredictionState, ProviderInput, ProviderOutput, SavedFile
from core.providers.files import save_bytes

_FORMATS = {"webp": "WEBP", "jpg": "JPEG", "png": "PNG"}


def dimensions(aspect_ratio: str, megapixels: float) -> tuple[int, int]:
    """Width and height in pixels for ``aspect_ratio`` (``16:9``) at about ``megapixels``, multiples of 16."""
    w, h = (int(part) for part in aspect_ratio.split(":", 1))
    height = math.sqrt(megapixels * 1_000_000 * h / w)
    width = height * w / h
    return max(256, round(width / 16) * 16), max(256, round(height / 16) * 16)


def translate_error(err: Exception) -> ProviderError:
    """A core error for what the client raised: by HTTP status, or unreachable / timed out."""
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        detail = " ".join(str(err).split())[:300]
        match status:
            case 401 | 403:
                return ProviderAuthError(f"Hugging Face rejected the token ({status}): check HF_TOKEN")
            case 402:
                return ProviderBillingError("Hugging Face refused the request (402): the account needs credit")
            case 400 | 404 | 422:
                return ProviderInputError(f"Hugging Face rejected the request ({status}): {detail}")
            case 429:
                return ProviderRateLimited(f"Hugging Face is rate limiting us (429): {detail}")
            case code if code is not None and code >= 500:
                return ProviderUnavailable(f"Hugging Face is unavailable ({code}): {detail}")
        return ProviderError(f"Hugging Face error ({status}): {detail}")
    if isinstance(err, InferenceTimeoutError | TimeoutError):
        return ProviderUnavailable("Hugging Face did not answer in time")
    if any(cls.__name__ in ("TransportError", "TimeoutException") for cls in type(err).__mro__):
        return ProviderUnavailable(f"could not reach Hugging Face: {err}")
    return ProviderError(f"Hugging Face error: {type(err).__name__}: {err}")


def _encode(image: Image.Image, output_format: str) -> bytes:
    out = io.BytesIO()
    fmt = _FORMATS.get(output_format, "WEBP")
    (image.convert("RGB") if fmt == "JPEG" else image).save(out, format=fmt, quality=90)
    return out.getvalue()


def _output(data: bytes, url: str) -> ProviderOutput:
    async def read() -> bytes:
        return data

    async def save(path: Path, timeout: float) -> SavedFile:
        return await save_bytes(data, path)

    return ProviderOutput(url=url, read=read, save=save)


class HuggingFaceProvider:
    """``ImageProvider`` for Hugging Face Inference Providers (text-to-image models only)."""

    name = "hf"

    def __init__(self, settings: HuggingFaceSettings, token: str | None) -> None:
        self.settings = settings
        self._token = token

    def check_ready(self) -> None:
        """Raise ``ProviderNotConfigured`` without an HF_TOKEN."""
        if not self._token:
            raise ProviderNotConfigured("Hugging Face is not configured: set HF_TOKEN")

    async def create(self, request: ProviderInput) -> PredictionState:
        """Make ``num_outputs`` images (one request each, together; seeds ``seed``, ``seed + 1``, …) and return
        the finished prediction. Raises ``ProviderNotConfigured`` and the ``translate_error`` errors."""
        self.check_ready()
        model_id = request.model.providers.get("hf")
        if model_id is None or request.image is not None:
            raise ProviderInputError(f"model {request.model_name} does not run on Hugging Face")
        width, height = dimensions(request.aspect_ratio, self.settings.megapixels)
        client = AsyncInferenceClient(
            provider=self.settings.inference_provider,  # type: ignore[arg-type]
            api_key=self._token,
            base_url=f"{self.settings.base_url.rstrip('/')}/{self.settings.inference_provider}/models/{model_id}",
            timeout=self.settings.timeout_seconds,
        )
        prediction_id = f"hf-{uuid.uuid4().hex[:20]}"

        async def one(index: int) -> bytes:
            seed = None if request.seed is None else request.seed + index
            params: dict[str, Any] = {"width": width, "height": height, "seed": seed}
            image = await client.text_to_image(request.prompt, **params)
            return await asyncio.to_thread(_encode, image, request.output_format)

        try:
            images = await asyncio.gather(*(one(i) for i in range(request.num_outputs)))
        except Exception as err:
            raise translate_error(err) from err
        finally:
            await client.close()  # type: ignore[no-untyped-call]
        outputs = tuple(_output(data, f"hf://{model_id}/{prediction_id}/{i}") for i, data in enumerate(images))
        return PredictionState(id=prediction_id, status="succeeded", outputs=outputs)

    async def wait(
        self, prediction_id: str, *, timeout: float, running_for: float = 0.0, interval: float | None = None
    ) -> PredictionState:
        """Hugging Face predictions finish inside ``create``; one found unfinished (a restart in between) cannot
        be resumed: raises ``ProviderError``, so the job fails and its hold is released."""
        raise ProviderError(f"Hugging Face prediction {prediction_id} cannot be resumed after a restart")

    async def cancel(self, prediction_id: str) -> None:
        """Nothing to cancel: requests finish or fail inside ``create``."""

    async def close(self) -> None:
        """Nothing to close: each ``create`` closes its client."""
