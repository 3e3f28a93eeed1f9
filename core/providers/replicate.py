"""Replicate provider on the official ``replicate`` client (1.0.x).

Wire format: Replicate's HTTP API (replicate.com/docs/reference/http). Create with ``Prefer: wait=N`` (the
client's ``wait=N``), then poll ``GET /v1/predictions/{id}`` every ``poll_interval_seconds`` (≤ 0.5 s), cancel
past the timeout.
https outputs come back from ``replicate.helpers.transform_output`` as ``FileOutput`` objects, plain http
outputs as strings; both are handled. ``REPLICATE_BASE_URL`` points the client at another server.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import httpx
from aiolimiter import AsyncLimiter
from httpx_aiohttp import AiohttpTransport
from replicate.client import Client
from replicate.exceptions import ReplicateError
from replicate.helpers import FileOutput, transform_output
from replicate.prediction import Prediction
from replicate.webhook import Webhooks, WebhookSigningSecret

from core.config import ReplicateSettings
from core.errors import (
    GenerationTimeout,
    InvalidSignature,
    ProviderAuthError,
    ProviderBillingError,
    ProviderError,
    ProviderInputError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from core.providers import OutputReadError, PredictionState, ProviderInput, ProviderOutput, SavedFile
from core.providers.files import DownloadPool, save_bytes

#: Polling slows down to this interval (seconds) once a prediction has run for ``_SLOW_POLL_AFTER`` seconds:
#: videos run for minutes, and a poll every half second for ten minutes would be 1,200 requests.
_SLOW_POLL_SECONDS = 2.0
_SLOW_POLL_AFTER = 60.0

# SDXL's native buckets (width × height, pixels) for each aspect ratio.
SDXL_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "9:16": (768, 1344),
    "4:3": (1152, 896),
    "3:4": (896, 1152),
    "3:2": (1216, 832),
    "2:3": (832, 1216),
}


class CreateLimiter(Protocol):
    async def acquire(self) -> None:
        """Wait until one more prediction may be created."""
        ...


_RETRY_IN = re.compile(r"available in (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


def _image_file(request: ProviderInput) -> io.BytesIO:
    """The input image as a named file: the client uploads it (``POST /v1/files``) and sends its URL."""
    if request.image is None:
        raise ProviderInputError(f"{request.model_name} needs an input image")
    file = io.BytesIO(request.image.data)
    file.name = request.image.filename
    return file


def _edit_input(request: ProviderInput) -> dict[str, Any]:
    """Inputs of the image-in models: Seedance 1 Lite (prompt, optional first-frame ``image``, duration,
    resolution, aspect_ratio), Real-ESRGAN (image, scale), rembg (image), CodeFormer (image, upscale, …); each
    model's schema on replicate.com."""
    family = request.model.family
    data: dict[str, Any] = dict(request.model.input_defaults)
    if family == "seedance":
        data["prompt"] = request.prompt
        if request.image is not None:
            data["image"] = _image_file(request)  # the clip starts from it; aspect_ratio is then ignored
        else:
            data["aspect_ratio"] = request.aspect_ratio
    else:  # real_esrgan, rembg, codeformer
        data["image"] = _image_file(request)
    if request.seed is not None and family == "seedance":
        data["seed"] = request.seed
    return data


def build_input(request: ProviderInput) -> dict[str, Any]:
    """The model's input object (flux-schnell / flux-dev / flux-1.1-pro / SDXL (also SDXL-Lightning and Playground
    v2.5) / Ideogram schemas on replicate.com; the
    video and edit models in ``_edit_input``)."""
    family = request.model.family
    if family in ("seedance", "real_esrgan", "rembg", "codeformer"):
        return _edit_input(request)
    data: dict[str, Any] = {"prompt": request.prompt, **request.model.input_defaults}
    if family == "sdxl":
        width, height = SDXL_SIZES[request.aspect_ratio]
        data.update(width=width, height=height, num_outputs=request.num_outputs)
    elif family == "flux_pro":
        data.update(aspect_ratio=request.aspect_ratio, output_format=request.output_format)
    elif family == "ideogram":
        data.update(aspect_ratio=request.aspect_ratio)
    else:
        data.update(
            aspect_ratio=request.aspect_ratio,
            num_outputs=request.num_outputs,
            output_format=request.output_format,
        )
    if request.seed is not None:
        data["seed"] = request.seed
    return data


def _describe(err: ReplicateError) -> str:
    return (err.detail or err.title or "no detail given").strip().replace("\n", " ")


def translate_error(err: ReplicateError) -> ProviderError:
    """Map Replicate's problem JSON (``status``, ``title``, ``detail``) to a core error a person can act on."""
    detail = _describe(err)
    match err.status:
        case 401 | 403:
            return ProviderAuthError(f"Replicate rejected the API token ({err.status}): check REPLICATE_API_TOKEN")
        case 402:
            return ProviderBillingError(
                f"Replicate refused the prediction (402): the Replicate account needs credit ({detail})"
            )
        case 404:
            return ProviderInputError(f"Replicate does not know this model or prediction (404): {detail}")
        case 422:
            return ProviderInputError(f"Replicate rejected the input (422): {detail}")
        case 429:
            return ProviderRateLimited(f"Replicate is rate limiting us (429): {detail}")
        case status if status is not None and status >= 500:
            return ProviderUnavailable(f"Replicate is unavailable ({status}): {detail}")
        case _:
            return ProviderError(f"Replicate error ({err.status}): {detail}")


_DOWNLOAD_TIMEOUT = aiohttp.ClientTimeout(sock_connect=10.0, sock_read=30.0)


class ReplicateProvider:
    """``ImageProvider`` for Replicate. One instance (one HTTP client) per event loop."""

    name = "replicate"

    def __init__(
        self,
        settings: ReplicateSettings,
        api_token: str | None,
        *,
        base_url: str | None = None,
        sleep: Any = asyncio.sleep,
        download_workers: int = 2,
        download_megabytes_per_second: float | None = None,
        create_window: CreateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self._token = api_token
        # httpx on aiohttp's connection pool (httpx-aiohttp): httpcore's pool rescans every waiting request
        # for every connection, which a burst of concurrent creates makes quadratic. The client wraps this
        # transport in its retrying one. Output files are fetched on the same aiohttp session directly (a
        # download is a plain GET), reusing the pool's open connections when a burst of jobs finishes at once.
        # Videos are fetched by worker threads instead (``core.providers.files``), at a bounded rate.
        # Figures: bench/README.md.
        self._max_connections = settings.max_connections
        self._session: aiohttp.ClientSession | None = None
        self._client = Client(
            api_token=api_token or "missing",
            base_url=base_url,
            timeout=httpx.Timeout(settings.request_timeout_seconds, connect=10.0),
            transport=AiohttpTransport(client=self._http),
        )
        self._sleep = sleep
        # Replicate allows 600 creates a minute with short bursts above it (replicate.com/docs/topics/predictions/
        # rate-limits): a leaky bucket of that rate in one process; ``create_window`` (Redis) when several
        # replicas share the limit.
        self._creates: CreateLimiter = create_window or AsyncLimiter(settings.max_creates_per_minute, 60.0)
        self._downloads = DownloadPool(download_workers, download_megabytes_per_second)
        self._webhook_secret: str | None = None

    def _http(self) -> aiohttp.ClientSession:
        """The aiohttp session of API calls and downloads, made on first use (it needs the running loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # httpx's trust store: certifi, or SSL_CERT_FILE / SSL_CERT_DIR when set.
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, ssl=httpx.create_ssl_context(trust_env=True)
                ),
            )
        return self._session

    def check_ready(self) -> None:
        """Raise ``ProviderNotConfigured`` without a REPLICATE_API_TOKEN."""
        if not self._token:
            raise ProviderNotConfigured("Replicate is not configured: set REPLICATE_API_TOKEN")

    def _state(self, prediction: Prediction) -> PredictionState:
        outputs: list[ProviderOutput] = []
        if prediction.status == "succeeded" and prediction.output is not None:
            raw = transform_output(prediction.output, self._client)
            items = raw if isinstance(raw, list) else [raw]
            for item in items:
                outputs.append(self._output(item))
        predict_time = (prediction.metrics or {}).get("predict_time")
        return PredictionState(
            id=prediction.id,
            status=prediction.status,
            outputs=tuple(outputs),
            error=str(prediction.error) if prediction.error else None,
            predict_time=float(predict_time) if isinstance(predict_time, int | float) else None,
        )

    def _output(self, item: Any) -> ProviderOutput:
        url = item.url if isinstance(item, FileOutput) else str(item)
        if isinstance(item, FileOutput) and url.startswith("data:"):  # inline output: decoded, not fetched

            async def save_inline(path: Path, timeout: float) -> SavedFile:
                return await save_bytes(await item.aread(), path)

            return ProviderOutput(url=url[:64], read=item.aread, save=save_inline)

        async def read() -> bytes:
            """Download the output file once (bytes); raises ``OutputReadError``."""
            try:
                async with self._http().get(url, timeout=_DOWNLOAD_TIMEOUT) as response:
                    response.raise_for_status()
                    return await response.read()
            except aiohttp.ClientError as err:
                raise OutputReadError(f"{type(err).__name__}: {err}") from err

        async def save(path: Path, timeout: float) -> SavedFile:
            """Fetch the output file once into ``path`` in a download process; raises ``OutputReadError``."""
            return await self._downloads.fetch(url, path, timeout)

        return ProviderOutput(url=url, read=read, save=save)

    async def webhook_state(
        self, headers: Mapping[str, str], body: bytes, *, secret: str | None, tolerance_seconds: int
    ) -> PredictionState:
        """The prediction a Replicate webhook delivers, once its signature is verified (replicate.com/docs/
        topics/webhooks/verify-webhook: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature: v1,<base64
        HMAC-SHA256>``, checked by the client's ``Webhooks.validate``). ``secret`` is the ``whsec_…`` signing
        secret; without it the account's default secret is asked of the API once and kept.

        Raises:
            InvalidSignature: headers missing, a signature that does not match, or a timestamp more than
                ``tolerance_seconds`` away from now.
            ProviderError: the signing secret could not be fetched.
        """
        key = secret or await self._default_secret()
        try:
            text = body.decode()
            Webhooks.validate(
                headers=dict(headers), body=text, secret=WebhookSigningSecret(key=key), tolerance=tolerance_seconds
            )
            data = json.loads(text)
        except (ValueError, TypeError) as err:  # WebhookValidationError is a ValueError, as is bad JSON
            raise InvalidSignature(f"Replicate webhook refused: {err}") from err
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise InvalidSignature("Replicate webhook refused: the body is not a prediction")
        prediction = Prediction(**data)
        prediction._client = self._client
        return self._state(prediction)

    async def _default_secret(self) -> str:
        if self._webhook_secret is None:
            self.check_ready()
            found = await self._call(lambda: self._client.webhooks.default.async_secret())
            self._webhook_secret = str(found.key)
        return self._webhook_secret

    @property
    def client(self) -> Client:
        """The official client (trainings use it too: ``core.providers.replicate_training``)."""
        return self._client

    async def call(self, coro_factory: Any) -> Any:
        """Await ``coro_factory()``; Replicate's errors and network failures become ``ProviderError``s."""
        return await self._call(coro_factory)

    async def _call(self, coro_factory: Any) -> Any:
        try:
            return await coro_factory()
        except ReplicateError as err:
            raise translate_error(err) from err
        except httpx.TimeoutException as err:
            raise ProviderUnavailable(f"Replicate did not answer in time ({type(err).__name__})") from err
        except httpx.TransportError as err:
            raise ProviderUnavailable(f"could not reach Replicate: {err}") from err

    async def create(self, request: ProviderInput) -> PredictionState:
        """Create the prediction with ``Prefer: wait=N``; retry a 429 after the stated delay (bounded).

        Raises ``ProviderNotConfigured`` without a token, and the ``translate_error`` errors otherwise.
        """
        self.check_ready()
        ref = request.model.ref
        body = build_input(request)
        owner_name, _, version = ref.partition(":")
        wait: int | bool = self.settings.wait_seconds if request.sync_wait else False
        hook: dict[str, Any] = {}
        if request.webhook:
            hook = {"webhook": request.webhook, "webhook_events_filter": ["completed"]}
        attempt = 0
        while True:
            await self._creates.acquire()
            for value in body.values():
                if isinstance(value, io.BytesIO):
                    value.seek(0)  # a retried create uploads the input again
            try:
                if version:
                    prediction = await self._call(
                        lambda: self._client.predictions.async_create(version=version, input=body, wait=wait, **hook)
                    )
                else:
                    prediction = await self._call(
                        lambda: self._client.models.predictions.async_create(
                            model=owner_name, input=body, wait=wait, **hook
                        )
                    )
                return self._state(prediction)
            except ProviderRateLimited as err:
                attempt += 1
                match = _RETRY_IN.search(err.message)
                delay = float(match.group(1)) if match else 1.0
                if attempt > self.settings.rate_limit_retries or delay > self.settings.max_retry_after_seconds:
                    raise ProviderRateLimited(f"{err.message} (gave up after {attempt - 1} retries)") from err
                await self._sleep(delay)

    async def get(self, prediction_id: str) -> PredictionState:
        """The prediction's current state (one ``GET /v1/predictions/{id}``)."""
        self.check_ready()
        prediction = await self._call(lambda: self._client.predictions.async_get(prediction_id))
        return self._state(prediction)

    async def wait(
        self, prediction_id: str, *, timeout: float, running_for: float = 0.0, interval: float | None = None
    ) -> PredictionState:
        """Poll every ``interval`` seconds (default ``poll_interval_seconds``) until terminal, backing off to at
        most 2 s apart once the prediction has run a minute (``running_for``: seconds it had run before this
        call); past ``timeout`` seconds cancel the prediction and raise ``GenerationTimeout``."""
        started = time.monotonic() - running_for
        deadline = time.monotonic() + timeout
        interval = interval or self.settings.poll_interval_seconds
        while True:
            state = await self.get(prediction_id)
            if state.done:
                return state
            now = time.monotonic()
            if now >= deadline:
                await self.cancel(prediction_id)
                raise GenerationTimeout(f"the model did not finish within {timeout:g} s; the prediction was canceled")
            if now - started >= _SLOW_POLL_AFTER:
                interval = max(interval, min(_SLOW_POLL_SECONDS, interval * 1.5))
            await self._sleep(min(interval, max(0.0, deadline - now)))

    async def cancel(self, prediction_id: str) -> None:
        """Cancel the prediction; errors are ignored (it may have finished meanwhile)."""
        with contextlib.suppress(ReplicateError, httpx.HTTPError):
            await self._client.predictions.async_cancel(prediction_id)

    async def close(self) -> None:
        """Close the HTTP clients and the download threads."""
        await self._client._async_client.aclose()
        if self._session is not None:
            await self._session.close()
        self._downloads.close()
