"""Failover between image providers, with a circuit breaker per provider.

A catalog model lists its providers in order (``ModelSpec.routes``). ``FailoverProvider.create`` tries them in
that order and moves on when one fails before giving any output: unreachable or 5xx (``ProviderUnavailable``),
429 past its retries (``ProviderRateLimited``), 402 (``ProviderBillingError``), or not configured. The job keeps
its one hold and is charged once, whichever provider made the picture; the switch is on the returned
``PredictionState`` (``provider``, ``switches``) and the runner records it on the job. Other errors (a refused
input, a failed model) are the request's fault and are raised as they are.

Each provider has a ``CircuitBreaker``: after ``failover.failure_threshold`` failures in a row it opens and the
provider is skipped for ``failover.open_seconds``; then it is half-open and lets one call through as a probe,
whose success closes it and whose failure opens it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from core.errors import (
    ProviderBillingError,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderUnavailable,
)
from core.provider_settings import FailoverSettings
from core.providers import ImageProvider, PredictionState, ProviderInput

log = logging.getLogger(__name__)

#: Failures before any output that move a job to the model's next provider.
FAIL_OVER = (ProviderUnavailable, ProviderRateLimited, ProviderBillingError, ProviderNotConfigured)
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """Closed → open after ``threshold`` failures in a row → half-open after ``open_seconds`` (one probe
    allowed at a time) → closed on the probe's success, open again on its failure. ``clock``: seconds."""

    def __init__(self, threshold: int, open_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.opened_count = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` now."""
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self.clock() >= self.opened_at + self.open_seconds else OPEN

    def allow(self) -> bool:
        """Whether a call may go to the provider now (in half-open, only the one probe)."""
        state = self.state
        if state == CLOSED:
            return True
        if state == HALF_OPEN and not self.probing:
            self.probing = True
            return True
        return False

    def succeeded(self) -> None:
        """The provider answered (with output, or with an error that is the request's fault)."""
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self) -> None:
        """The provider failed before any output."""
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            if self.opened_at is None or self.probing:
                self.opened_count += 1
            self.opened_at, self.probing = self.clock(), False

    def abandoned(self) -> None:
        """The call ended without telling (cancelled): a probe slot is given back."""
        self.probing = False


class FailoverProvider:
    """``ImageProvider`` over named providers (``replicate``, ``hf``), in each model's order. Prediction ids of
    providers after the first carry their name (``hf:<id>``) so ``wait`` and ``cancel`` reach the right one."""

    name = "failover"

    def __init__(
        self,
        providers: dict[str, ImageProvider],
        settings: FailoverSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.providers = providers
        self.default = next(iter(providers))
        self.breakers = {name: CircuitBreaker(settings.failure_threshold, settings.open_seconds, clock)
                         for name in providers}  # fmt: skip
        self.switches: dict[tuple[str, str], int] = {}

    def check_ready(self) -> None:
        """Raise ``ProviderNotConfigured`` when no provider is configured."""
        problems = []
        for provider in self.providers.values():
            try:
                provider.check_ready()
                return
            except ProviderNotConfigured as err:
                problems.append(err.message)
        raise ProviderNotConfigured("; ".join(problems))

    def _route(self, prediction_id: str) -> tuple[ImageProvider, str]:
        name, sep, rest = prediction_id.partition(":")
        if sep and name in self.providers:
            return self.providers[name], rest
        return self.providers[self.default], prediction_id

    async def create(self, request: ProviderInput) -> PredictionState:
        """Create the prediction on the model's first provider that takes it.

        Raises:
            ProviderUnavailable: every provider failed before any output or is skipped ("the image service is
                unavailable"); nothing was made. When only one provider was called (the others not configured),
                its own error is raised as it is; when none is configured, ``ProviderNotConfigured``.
            ProviderError: another provider error (the request's fault), from the provider that raised it.
        """
        tried: list[str] = []
        failures: list[ProviderError] = []  # of the providers that were called (not skipped, configured)
        unconfigured: list[ProviderError] = []
        routes = [(name, model_id) for name, model_id in request.model.routes if name in self.providers]
        for name, model_id in routes:
            breaker = self.breakers[name]
            if not breaker.allow():
                tried.append(f"{name}: skipped, failing for a while")
                continue
            spec = request.model.model_copy(update={"ref": model_id}) if name == "replicate" else request.model
            try:
                state = await self.providers[name].create(replace(request, model=spec))
            except FAIL_OVER as err:
                if isinstance(err, ProviderNotConfigured):
                    breaker.abandoned()
                    unconfigured.append(err)
                else:
                    breaker.failed()
                    failures.append(err)
                tried.append(f"{name}: {err.message}")
                log.warning("provider %s failed for %s, trying the next: %s", name, request.model_name, err.message)
                continue
            except ProviderError:
                breaker.succeeded()
                raise
            except BaseException:
                breaker.abandoned()
                raise
            breaker.succeeded()
            if tried:
                origin = routes[0][0]
                self.switches[(origin, name)] = self.switches.get((origin, name), 0) + 1
            prediction_id = state.id if name == self.default else f"{name}:{state.id}"
            return replace(state, id=prediction_id, provider=name, switches=tuple(tried))
        if len(failures) == 1 and len(tried) == len(failures) + len(unconfigured):
            raise failures[0]  # one provider was called: its own error says best what happened
        if not failures and unconfigured and len(unconfigured) == len(tried):
            raise unconfigured[0]
        raise ProviderUnavailable(f"the image service is unavailable ({'; '.join(tried) or 'no provider'})")

    async def wait(
        self, prediction_id: str, *, timeout: float, running_for: float = 0.0, interval: float | None = None
    ) -> PredictionState:
        """``wait`` of the provider that made the prediction."""
        provider, own_id = self._route(prediction_id)
        state = await provider.wait(own_id, timeout=timeout, running_for=running_for, interval=interval)
        return replace(state, id=prediction_id, provider=provider.name)

    async def cancel(self, prediction_id: str) -> None:
        """``cancel`` of the provider that made the prediction."""
        provider, own_id = self._route(prediction_id)
        await provider.cancel(own_id)

    async def close(self) -> None:
        """Close every provider."""
        for provider in self.providers.values():
            await provider.close()

    def breaker_states(self) -> dict[str, str]:
        """Each provider's breaker state (``closed``, ``open``, ``half_open``)."""
        return {name: breaker.state for name, breaker in self.breakers.items()}
