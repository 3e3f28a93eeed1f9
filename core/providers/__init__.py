"""Image providers: the protocol the generation core drives, one module per vendor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from core.config import ModelSpec

TERMINAL = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class InputImage:
    """An image a model works on: its bytes and a file name whose extension gives its type (``input.png``)."""

    data: bytes = field(repr=False)
    filename: str


@dataclass(frozen=True)
class ProviderInput:
    """One generation as the provider sees it. ``prompt`` already carries the style suffix; ``image`` is the
    input of an edit or animation; ``sync_wait`` False creates the prediction without waiting for it (long
    predictions, whose id must be saved at once)."""

    model_name: str
    model: ModelSpec
    prompt: str
    aspect_ratio: str
    num_outputs: int
    output_format: str
    seed: int | None = None
    image: InputImage | None = None
    sync_wait: bool = True
    webhook: str | None = None  # where the provider reports the finished prediction (Replicate only)


class OutputReadError(Exception):
    """Downloading an output file failed (connection, HTTP status, read); the caller may retry."""


@dataclass(frozen=True)
class SavedFile:
    """A file written by ``ProviderOutput.save``: its size in bytes and SHA-256 (hex)."""

    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ProviderOutput:
    """One output file: its URL, a coroutine factory that downloads it once into memory (``read``), and one
    that fetches it once into a file within a time limit (``save(path, timeout seconds)``, for large outputs
    such as videos). Neither retries; both raise ``OutputReadError`` or ``TimeoutError``."""

    url: str
    read: Callable[[], Awaitable[bytes]] = field(repr=False, compare=False)
    save: Callable[[Path, float], Awaitable[SavedFile]] = field(repr=False, compare=False)


@dataclass(frozen=True)
class PredictionState:
    """A provider prediction: ``status`` is starting | processing | succeeded | failed | canceled; ``provider``
    the one that made it and ``switches`` why the providers before it were passed over (``core.providers.failover``)."""

    id: str
    status: str
    outputs: tuple[ProviderOutput, ...] = ()
    error: str | None = None
    predict_time: float | None = None
    provider: str | None = None
    switches: tuple[str, ...] = ()
    trained_version: str | None = None  # a training's result: the model version, owner/name:version

    @property
    def done(self) -> bool:
        """True once the prediction succeeded, failed or was canceled."""
        return self.status in TERMINAL


class ImageProvider(Protocol):
    name: str

    def check_ready(self) -> None:
        """Raise ``ProviderNotConfigured`` when the provider cannot be used (missing credentials)."""
        ...

    async def create(self, request: ProviderInput) -> PredictionState:
        """Start a prediction; may return a finished one (sync wait). Raises ``ProviderError`` subclasses."""
        ...

    async def wait(
        self, prediction_id: str, *, timeout: float, running_for: float = 0.0, interval: float | None = None
    ) -> PredictionState:
        """Poll until the prediction is terminal, ``interval`` seconds apart (default: the provider's own; less
        often once it has run long: ``running_for`` is the seconds it ran before this call); cancel it and
        raise ``GenerationTimeout`` after ``timeout`` s."""
        ...

    async def cancel(self, prediction_id: str) -> None:
        """Cancel the prediction (best effort)."""
        ...

    async def close(self) -> None:
        """Close the provider's HTTP client."""
        ...
