"""Finishing jobs from the provider's webhooks (Replicate's ``completed`` event), on whichever replica gets them.

A webhook names its job (``?job=<id>`` in the URL the job's prediction was created with) and carries the
prediction. What happens then depends on who runs the job:

- this process: the state is handed to the job's run (``JobRunner.deliver``), which ends its wait at once;
- another process whose lease is current: that process may be alive (it will see the prediction finish by
  polling) or may have died before its lease ran out. One renewal period later (``lease_seconds / 3`` + 1 s)
  the lease is read again: renewed, the owner lives and finishes the job; not renewed, the owner has stopped,
  and this process takes the lease over (a conditional update only one process wins) and finishes the job
  with the webhook's state;
- nobody (a lapsed lease): this process takes it over at once.

The prediction id is recorded on the job first (when the owner died before saving it), so if this process
stops too, the lease takeover of ``resume_unfinished`` still resumes the prediction instead of failing the
job. Charging stays exactly once whoever finishes: the job's finish is a conditional update with its settle
in one transaction (``storage.repositories.jobs``).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from core.errors import InvalidRequest
from core.providers import PredictionState

if TYPE_CHECKING:
    from core.generation.runner import JobRunner

log = logging.getLogger(__name__)

UNFINISHED = ("queued", "running")


class PredictionWebhooks:
    """Takes provider webhooks to the job they finish (see the module's docstring). Owns its tasks (``close``)."""

    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner
        self._tasks: set[asyncio.Task[None]] = set()

    async def completed(self, job_id: str, state: PredictionState) -> str:
        """A terminal prediction of ``job_id``. Returns what was done: ``ignored`` (no such unfinished job),
        ``delivered`` (this process runs it), ``scheduled`` (taken over now or after one renewal period if
        its owner stopped).

        Raises:
            InvalidRequest: the job has another prediction than ``state.id`` (field ``id``).
        """
        runner = self.runner
        job = await runner.jobs.get(job_id)
        if job is None or job.status not in UNFINISHED:
            return "ignored"
        if job.prediction_id not in (None, state.id):
            raise InvalidRequest(f"prediction {state.id} is not the prediction of job {job_id}", field="id")
        if job.prediction_id is None and not await runner.jobs.bind_prediction(job_id, state.id):
            return "ignored"  # it finished meanwhile
        if runner.deliver(job_id, state):
            return "delivered"
        task = asyncio.create_task(self._finish(job_id, state), name=f"webhook-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "scheduled"

    async def _finish(self, job_id: str, state: PredictionState) -> None:
        runner = self.runner
        lease = runner.settings.generation.lease_seconds
        job = await runner.jobs.get(job_id)
        if job is None or job.status not in UNFINISHED:
            return
        stale: tuple[str, datetime] | None = None
        if job.lease_owner and job.lease_expires_at and job.lease_expires_at > runner.clock.now():
            seen = (job.lease_owner, job.lease_expires_at)
            await asyncio.sleep(lease / 3 + 1)  # a live owner renews its lease within this
            if runner.deliver(job_id, state):  # it was resumed here meanwhile
                return
            stale = seen
        now = runner.clock.now()
        claimed = await runner.jobs.claim(job_id, runner.runner_id, now, now + timedelta(seconds=lease), stale=stale)
        if claimed is None:
            return  # finished, renewed by a live owner, or taken by another process
        log.info("finishing job %s from its prediction's webhook (its runner stopped)", job_id)
        runner.spawn(job_id)
        runner.deliver(job_id, state)

    async def close(self) -> None:
        """Cancel the pending takeovers (the jobs' leases lapse and ``resume_unfinished`` finishes them)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
