"""Replicate trainings through the official client: create the private destination model, start the training,
poll it (replicate.com/docs/reference/http#trainings.create, #trainings.get, #models.create)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from replicate.exceptions import ReplicateError

from core.errors import GenerationTimeout
from core.providers import PredictionState
from core.providers.replicate import ReplicateProvider

_POLL_SECONDS = (1.0, 5.0)  # first, then at most: a training runs for minutes


@dataclass(frozen=True)
class TrainingInput:
    """One training: the ``trainer`` version (``owner/name:version``), the ``destination`` model
    (``owner/name``, created private on ``hardware`` when missing), the photos as one zip, the trigger word."""

    trainer: str
    destination: str
    images: bytes
    trigger_word: str
    steps: int
    hardware: str
    description: str = ""


def _state(training: Any) -> PredictionState:
    output = training.output if isinstance(training.output, dict) else {}
    metrics = getattr(training, "metrics", None) or {}
    predict_time = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return PredictionState(
        id=training.id,
        status=training.status,
        error=str(training.error) if training.error else None,
        predict_time=float(predict_time) if isinstance(predict_time, int | float) else None,
        provider="replicate",
        trained_version=output.get("version") if isinstance(output.get("version"), str) else None,
    )


class ReplicateTrainer:
    """Trainings on the Replicate account of ``provider``'s token."""

    def __init__(self, provider: ReplicateProvider, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.provider = provider
        self._sleep = sleep

    async def create(self, request: TrainingInput) -> PredictionState:
        """Create the destination model when missing (409: it exists), then start the training.

        Raises:
            ProviderNotConfigured: no REPLICATE_API_TOKEN.
            ProviderError: Replicate refused or could not be reached (``translate_error``).
        """
        self.provider.check_ready()
        client = self.provider.client
        owner, name = request.destination.split("/", 1)

        async def destination() -> None:
            try:
                await client.models.async_create(
                    owner=owner, name=name, visibility="private", hardware=request.hardware,
                    description=request.description,
                )  # fmt: skip
            except ReplicateError as err:
                if err.status != 409:  # 409: the model exists (an earlier training of this name)
                    raise

        await self.provider.call(destination)
        trainer, _, version = request.trainer.partition(":")
        photos = io.BytesIO(request.images)
        photos.name = "photos.zip"
        body = {"input_images": photos, "trigger_word": request.trigger_word, "steps": request.steps}
        training = await self.provider.call(
            lambda: client.trainings.async_create(
                model=trainer, version=version, input=body, destination=request.destination
            )
        )
        return _state(training)

    async def wait(self, training_id: str, *, timeout: float, running_for: float = 0.0) -> PredictionState:
        """Poll until the training is terminal (every second, then every 5 s); past ``timeout`` seconds cancel
        it and raise ``GenerationTimeout``."""
        deadline = time.monotonic() + timeout
        interval = _POLL_SECONDS[0]
        client = self.provider.client
        while True:
            state = _state(await self.provider.call(lambda: client.trainings.async_get(training_id)))
            if state.done:
                return state
            if time.monotonic() >= deadline:
                await self.cancel(training_id)
                raise GenerationTimeout(f"the training did not finish within {timeout:g} s; it was canceled")
            await self._sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(_POLL_SECONDS[1], interval * 1.5)

    async def cancel(self, training_id: str) -> None:
        """Cancel the training; errors are ignored (it may have finished meanwhile)."""
        with contextlib.suppress(ReplicateError, httpx.HTTPError):
            await self.provider.client.trainings.async_cancel(training_id)
