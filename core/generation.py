"""Durable generation jobs: request → job row + credit hold → provider prediction → stored outputs.

Lifecycle (ARCHITECTURE.md "Generation job lifecycle")::

    submit: job row (idempotency key unique per account) + hold, one transaction      status queued
    run:    provider create (sync wait) → prediction id saved → short polling           status running
            → outputs downloaded (retries) → blob store → assets → settle → event      status succeeded
            → thumbnails, after the event (they are not on the time-to-screen path)
    any failure → release the hold (exactly once)                                       status failed
    restart → jobs whose runner's lease expired are resumed by prediction id, or failed and released

A job is run by the process holding its lease (``lease_owner``, renewed every ``lease_seconds / 3``), so
several processes (the server, a CLI, replicas) can share one database without running a job twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import Connection, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from core.clock import Clock
from core.config import Settings
from core.credits import Charge, CreditService
from core.errors import (
    Conflict,
    GenerationCanceled,
    InvalidRequest,
    ModelFailed,
    NotFound,
    OutputDownloadFailed,
    ProviderError,
    ShowmeError,
)
from core.library import AssetView, Library
from core.media import NotAnImage, lowest_cpu_priority, make_thumbnails, probe_image
from core.prompts import apply_style, check_prompt
from core.providers import ImageProvider, OutputReadError, PredictionState, ProviderInput, ProviderOutput
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.models import Asset, Job

log = logging.getLogger(__name__)

ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "canceled")
_BY_KEY = select(Job.id, Job.request_hash).where(
    Job.account_id == bindparam("account"), Job.idempotency_key == bindparam("key")
)
_JOB_SUCCEEDED = (
    update(Job)
    .where(Job.id == bindparam("job"), Job.status.in_(ACTIVE))
    .values(
        status="succeeded",
        started_at=func.coalesce(Job.started_at, bindparam("started", type_=Job.started_at.type)),
        finished_at=bindparam("finished", type_=Job.finished_at.type),
        lease_owner=None,
        prediction_id=func.coalesce(bindparam("prediction", type_=Job.prediction_id.type), Job.prediction_id),
    )
    .returning(*Job.__table__.c)
)
_RENEW_LEASES = (
    update(Job)
    .where(Job.id.in_(bindparam("ids", expanding=True)), Job.lease_owner == bindparam("owner"))
    .values(lease_expires_at=bindparam("expires", type_=Job.lease_expires_at.type))
)
_SET_THUMB = (
    update(Asset)
    .where(Asset.job_id == bindparam("job"), Asset.output_index == bindparam("index"))
    .values(thumb_key=bindparam("thumb"))
)


# -- write operations -----------------------------------------------------------------------------------------
# Module-level functions of a Connection and plain data (``Database.run_write`` runs them in the writer
# process, so they pickle as ``functools.partial``s of these).


def _create_job(
    conn: Connection, *, credits: CreditService, values: dict[str, Any], reuse_key: bool, credits_per_output: int
) -> Charge | tuple[str, str]:
    """The job row ``values`` (without ``unit`` and ``cost``) and its hold; returns the charge held. With
    ``reuse_key``, when this account already used the idempotency key, writes nothing and returns that job's
    ``(id, request hash)``. Raises ``InsufficientCredits`` (nothing written)."""
    account_id = values["account_id"]
    credits.lock(conn, account_id)
    if reuse_key:
        existing = conn.execute(_BY_KEY, {"account": account_id, "key": values["idempotency_key"]}).first()
        if existing is not None:
            return existing.id, existing.request_hash
    charge, grants = credits.choose_charge(
        conn,
        account_id=account_id,
        model=values["model"],
        outputs=values["num_outputs"],
        credits_per_output=credits_per_output,
    )
    conn.execute(insert(Job), {**values, "unit": charge.unit, "cost": charge.amount})
    credits.hold(conn, account_id=account_id, job_id=values["id"], charge=charge, model=values["model"], grants=grants)
    return charge


def _renew_leases(conn: Connection, *, ids: list[str], owner: str, expires: datetime) -> None:
    conn.execute(_RENEW_LEASES, {"ids": ids, "owner": owner, "expires": expires})


def _set_job_running(conn: Connection, *, job_id: str, prediction_id: str, started_at: datetime) -> None:
    """Save the prediction id (a restart resumes the job by it) and mark the job running."""
    conn.execute(
        update(Job).where(Job.id == job_id).values(prediction_id=prediction_id, status="running", started_at=started_at)
    )


def _start_job(conn: Connection, *, job_id: str, now: datetime) -> tuple[Any, ...] | None:
    """Mark a resumed job running; ``(prediction id, model, params, outputs, account, prompt, started at)``,
    or None when it does not exist or has finished."""
    job = conn.execute(select(Job).where(Job.id == job_id)).first()
    if job is None or job.status in FINISHED:
        return None
    started_at = job.started_at or now
    conn.execute(update(Job).where(Job.id == job_id).values(status="running", started_at=started_at))
    return (job.prediction_id, job.model, dict(job.params), job.num_outputs, job.account_id, job.prompt, started_at)


def _set_thumbnails(conn: Connection, *, rows: list[dict[str, Any]]) -> None:
    conn.execute(_SET_THUMB, rows)


def _asset_insert(dialect: str) -> Any:
    """``INSERT … ON CONFLICT (job_id, output_index) DO NOTHING RETURNING *`` for ``dialect`` (built once)."""
    statement = _ASSET_INSERTS.get(dialect)
    if statement is None:
        dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = _ASSET_INSERTS[dialect] = (
            dialect_insert(Asset)
            .on_conflict_do_nothing(index_elements=["job_id", "output_index"])
            .returning(*Asset.__table__.c)
        )
    return statement


_ASSET_INSERTS: dict[str, Any] = {}


def _finish_job(
    conn: Connection,
    *,
    credits: CreditService,
    job_id: str,
    account_id: int,
    assets: list[dict[str, Any]],
    started_at: datetime | None,
    finished_at: datetime,
    prediction_id: str | None,
) -> tuple[Any, list[Any]] | None:
    """The job's asset rows (``assets``: one dict of column values each, with ``output_index``), the settle and
    the job's ``succeeded`` state in one transaction; the finished job (its columns as attributes) and its asset
    rows, or None when the job had already finished."""
    credits.lock(conn, account_id, verify=False)
    finished_job = conn.execute(
        _JOB_SUCCEEDED, {"job": job_id, "started": started_at, "finished": finished_at, "prediction": prediction_id}
    ).first()
    if finished_job is None:  # no such job, or it had finished (the update matched nothing)
        return None
    rows = list(conn.execute(_asset_insert(conn.dialect.name), assets))
    job = SimpleNamespace(**finished_job._mapping)
    used = (job.cost // job.num_outputs if job.num_outputs else job.cost) * len(assets)
    if credits.settle(conn, job_id, used, account_locked=True):  # locked above
        job.charge_state, job.charged = "settled", used  # what settle wrote after the row above was read
    return job, sorted(rows, key=lambda a: a.output_index)


def _fail_job(
    conn: Connection,
    *,
    credits: CreditService,
    job_id: str,
    status: str,
    error_code: str,
    error: str,
    prediction_id: str | None,
    started_at: datetime | None,
    finished_at: datetime,
) -> None:
    """Release the job's hold and mark it ``status`` (failed or canceled) with the error, if still active."""
    credits.release(conn, job_id, reason=error_code)
    if prediction_id:
        conn.execute(update(Job).where(Job.id == job_id).values(prediction_id=prediction_id))
    conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(
            started_at=func.coalesce(Job.started_at, started_at),
            status=status,
            error_code=error_code,
            error=error,
            finished_at=finished_at,
            lease_owner=None,
        )
    )


@dataclass(frozen=True)
class GenerationRequest:
    """What to generate. ``model`` and ``aspect_ratio`` default from config; ``num_outputs`` 1–4 images,
    each charged; ``idempotency_key`` makes a retried request return the first job instead of a new one."""

    prompt: str
    model: str | None = None
    style: str | None = None
    aspect_ratio: str | None = None
    num_outputs: int = 1
    seed: int | None = None
    conversation_id: str | None = None
    source: str = "api"
    idempotency_key: str | None = None


@dataclass(frozen=True)
class JobView:
    id: str
    account_id: int
    status: str
    model: str
    prompt: str
    styled_prompt: str
    aspect_ratio: str
    num_outputs: int
    unit: str
    cost: int
    charged: int
    charge_state: str
    prediction_id: str | None
    error_code: str | None
    error: str | None
    conversation_id: str | None
    source: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    assets: list[AssetView] = field(default_factory=list)
    style: str | None = None

    @property
    def done(self) -> bool:
        return self.status in FINISHED


class GenerationService:
    """Creates, runs, resumes and reports generation jobs. Owns its background tasks (``close``)."""

    THUMBNAIL_MAX_DEFER = 2.0  # seconds thumbnails wait for a moment when no job is being finished
    THUMBNAIL_BATCH = 32  # images per call to the thumbnail worker

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        credits: CreditService,
        library: Library,
        provider: ImageProvider,
        blobs: LocalBlobStore,
        clock: Clock,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.settings = settings
        self.credits = credits
        self.library = library
        self.provider = provider
        self.blobs = blobs
        self.clock = clock
        self.runner_id = uuid.uuid4().hex
        self._sleep = sleep
        self._slots = asyncio.Semaphore(settings.generation.max_concurrent_jobs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._thumbnailer: Executor = (
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=lowest_cpu_priority)
            if settings.generation.thumbnail_worker == "process"
            else ThreadPoolExecutor(1, "thumbnails", initializer=lowest_cpu_priority)
        )
        self._prediction_ids: dict[str, str] = {}
        self._fresh: dict[str, tuple[Any, ...]] = {}  # jobs submitted here: no need to read them back
        self._running: dict[str, datetime] = {}  # job id → when this process started it
        # Just-finished jobs for waiters, kept a minute: (monotonic expiry, job), oldest first.
        self._finished: dict[str, tuple[float, JobView]] = {}
        self._waiters: dict[str, list[asyncio.Future[JobView | None]]] = {}  # callers of wait(), by job id
        self._listeners: list[Callable[[str, JobView], Any]] = []
        self._lease_keeper: asyncio.Task[None] | None = None
        self._thumbnail_queue: list[tuple[str, int, bytes]] = []  # (job id, output index, image bytes)
        self._thumbnail_worker: asyncio.Task[None] | None = None
        self._finishing_jobs = 0  # jobs between their prediction's end and their answer
        self._quiet = asyncio.Event()  # set while _finishing_jobs is 0
        self._quiet.set()

    def start_thumbnail_worker(self) -> None:
        """Start the thumbnail worker now instead of at the first finished job. A worker process imports the
        server's modules at normal priority (its initializer lowers it only afterwards), about half a second
        of a core that the first jobs after startup would otherwise share with it."""
        self._thumbnailer.submit(os.getpid)

    # -- validation ---------------------------------------------------------------------------------

    def _validated(self, request: GenerationRequest) -> tuple[str, str, str, str]:
        """Return ``(model name, prompt, styled prompt, aspect ratio)`` or raise ``InvalidRequest``."""
        cfg = self.settings
        model_name = request.model or cfg.generation.default_model
        if model_name not in cfg.models:
            raise InvalidRequest(
                f"unknown model {model_name!r}; choose one of {', '.join(sorted(cfg.models))}", field="model"
            )
        spec = cfg.models[model_name]
        prompt = check_prompt(request.prompt, cfg.prompts.blocked_terms, max_length=cfg.prompts.max_length)
        styled = apply_style(prompt, request.style, cfg.styles)
        aspect = request.aspect_ratio or "1:1"
        if aspect not in spec.aspect_ratios:
            raise InvalidRequest(
                f"aspect_ratio {aspect!r} is not accepted by {model_name}; use one of {', '.join(spec.aspect_ratios)}",
                field="aspect_ratio",
            )
        if not 1 <= request.num_outputs <= spec.max_outputs:
            raise InvalidRequest(
                f"num_outputs must be between 1 and {spec.max_outputs} for {model_name}", field="num_outputs"
            )
        if request.seed is not None and not 0 <= request.seed < 2**32:
            raise InvalidRequest("seed must be between 0 and 4294967295", field="seed")
        return model_name, prompt, styled, aspect

    # -- submit --------------------------------------------------------------------------------------

    async def submit(self, account_id: int, request: GenerationRequest) -> JobView:
        """Create the job and hold its price in one transaction, then start it in the background.

        Returns the job (``queued``). With an ``idempotency_key`` already used by this account for the same
        request, returns that job and charges nothing. Raises ``InvalidRequest`` (names the field),
        ``PromptRefused``, ``InsufficientCredits`` (nothing written), ``Conflict`` for a key reused with a
        different request.
        """
        model_name, prompt, styled, aspect = self._validated(request)
        self.provider.check_ready()
        spec = self.settings.models[model_name]
        params = {"style": request.style, "aspect_ratio": aspect, "seed": request.seed, "styled_prompt": styled}
        request_hash = hashlib.sha256(
            json.dumps(
                [model_name, prompt, request.style, aspect, request.num_outputs, request.seed, request.conversation_id],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        key = request.idempotency_key or f"auto:{uuid.uuid4().hex}"
        if len(key) > 255:
            raise InvalidRequest("idempotency key must be at most 255 characters", field="idempotency_key")
        job_id = uuid.uuid4().hex
        now = self.clock.now()

        values = {
            "id": job_id,
            "account_id": account_id,
            "kind": "image",
            "model": model_name,
            "prompt": prompt,
            "params": params,
            "num_outputs": request.num_outputs,
            "status": "queued",
            "prediction_id": None,
            "error_code": None,
            "error": None,
            "charged": 0,
            "charge_state": "held",
            "source": request.source,
            "conversation_id": request.conversation_id,
            "idempotency_key": key,
            "request_hash": request_hash,
            "lease_owner": self.runner_id,
            "lease_expires_at": now + timedelta(seconds=self.settings.generation.lease_seconds),
            "created_at": now,
            "started_at": None,
            "finished_at": None,
        }

        op = functools.partial(
            _create_job,
            credits=self.credits,
            values=values,
            reuse_key=request.idempotency_key is not None,
            credits_per_output=spec.price,
        )
        created: Charge | tuple[str, str]
        try:
            created = await self.db.run_write(op, account=account_id)
        except IntegrityError:
            # Another process inserted the same idempotency key between our read and our insert.
            async with self.db.read() as session:
                found = (await session.execute(_BY_KEY, {"account": account_id, "key": key})).first()
            if found is None:
                raise
            created = found.id, found.request_hash
        if not isinstance(created, Charge):
            return await self._same_request(created[0], created[1], request_hash)
        values["unit"], values["cost"] = created.unit, created.amount
        self._fresh[job_id] = (None, model_name, params, request.num_outputs, account_id, prompt, None)
        view = self._view(SimpleNamespace(**values), [])
        self._notify("generation_started", view)
        self._spawn(job_id)
        return view

    async def _same_request(self, job_id: str, job_hash: str, request_hash: str) -> JobView:
        if job_hash != request_hash:
            raise Conflict("this idempotency key was already used for a different request", field="idempotency_key")
        return await self.get(job_id)

    async def generate(self, account_id: int, request: GenerationRequest, *, timeout: float | None = None) -> JobView:
        """``submit`` and wait until the job finishes (or ``timeout`` seconds pass; then it is still running)."""
        job = await self.submit(account_id, request)
        return await self.wait(job.id, timeout=timeout)

    # -- reading -------------------------------------------------------------------------------------

    async def get(self, job_id: str, account_id: int | None = None) -> JobView:
        """The job with its assets; raises ``NotFound`` (also for another account's job)."""
        async with self.db.read() as session:
            job = await session.get(Job, job_id)
        if job is None or (account_id is not None and job.account_id != account_id):
            raise NotFound(f"job {job_id} does not exist")
        assets = await self.library.for_job(job_id) if job.status == "succeeded" else []
        return self._view(job, assets)

    def _view(self, job: Any, assets: list[AssetView]) -> JobView:
        """A ``JobView`` of a job row (ORM object, Core row or the values just inserted)."""
        running = job.status == "queued" and job.id in self._running
        return JobView(
            id=job.id,
            account_id=job.account_id,
            status="running" if running else job.status,
            model=job.model,
            prompt=job.prompt,
            styled_prompt=str(job.params.get("styled_prompt") or job.prompt),
            aspect_ratio=str(job.params.get("aspect_ratio") or "1:1"),
            num_outputs=job.num_outputs,
            unit=job.unit,
            cost=job.cost,
            charged=job.charged,
            charge_state=job.charge_state,
            prediction_id=job.prediction_id,
            error_code=job.error_code,
            error=job.error,
            conversation_id=job.conversation_id,
            source=job.source,
            created_at=job.created_at,
            started_at=job.started_at or self._running.get(job.id),
            finished_at=job.finished_at,
            assets=assets,
            style=job.params.get("style"),
        )

    async def wait(self, job_id: str, *, timeout: float | None = None) -> JobView:
        """Wait until the job is finished or ``timeout`` seconds pass; returns its latest state.

        A job run by this process is awaited directly: the caller is woken with the finished job in the same
        step that records it (under load every extra hand-off through the event loop's queue waits behind all
        other ready work). One run elsewhere is polled every 0.25 s.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if job_id in self._tasks:
                finished = self._finished.get(job_id)
                if finished is not None:
                    return finished[1]
                waiter: asyncio.Future[JobView | None] = asyncio.get_running_loop().create_future()
                waiters = self._waiters.setdefault(job_id, [])
                waiters.append(waiter)
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    async with asyncio.timeout(remaining):
                        done = await waiter
                except TimeoutError:
                    done = None
                finally:
                    with contextlib.suppress(ValueError):
                        waiters.remove(waiter)
                return done if done is not None else await self.get(job_id)
            view = await self.get(job_id)
            if view.done or (deadline is not None and time.monotonic() >= deadline):
                return view
            await asyncio.sleep(0.25)

    def subscribe(self, listener: Callable[[str, JobView], Any]) -> None:
        """Call ``listener(event_type, job)`` on ``generation_started``, ``image_generated``,
        ``generation_failed``. Listeners must not block."""
        self._listeners.append(listener)

    def _notify(self, event: str, job: JobView) -> None:
        for listener in self._listeners:
            try:
                listener(event, job)
            except Exception:
                log.exception("job listener failed on %s", event)

    # -- running -------------------------------------------------------------------------------------

    def _spawn(self, job_id: str) -> None:
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._run(job_id), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _t: self._ended(job_id))
        if self._lease_keeper is None or self._lease_keeper.done():
            self._lease_keeper = asyncio.create_task(self._keep_leases(), name="job-leases")

    def _ended(self, job_id: str) -> None:
        """The job's task is over; waiters not woken by ``_remember`` (shutdown, a job another process had
        finished) read the job from the database."""
        self._tasks.pop(job_id, None)
        for waiter in self._waiters.pop(job_id, []):
            if not waiter.done():
                waiter.set_result(None)

    async def _keep_leases(self) -> None:
        """Renew the lease of every job this process runs, in one ``UPDATE`` every ``lease_seconds / 3``;
        ends when no job is left (``_spawn`` starts it again)."""
        lease = self.settings.generation.lease_seconds
        while self._tasks:
            await asyncio.sleep(lease / 3)
            ids = list(self._tasks)
            if not ids:
                return
            expires = self.clock.now() + timedelta(seconds=lease)

            try:
                await self.db.run_write(
                    functools.partial(_renew_leases, ids=ids, owner=self.runner_id, expires=expires)
                )
            except Exception:  # a database hiccup: try again next period, before the leases run out
                log.exception("renewing the leases of %d running jobs failed", len(ids))

    async def _run(self, job_id: str) -> None:
        async with self._slots:
            try:
                await self._execute(job_id)
            except asyncio.CancelledError:
                raise  # shutting down: the lease lapses and the job is resumed later
            except ShowmeError as err:
                await self._fail(job_id, err)
            except Exception as err:
                log.exception("job %s failed unexpectedly", job_id)
                await self._fail(job_id, ProviderError(f"unexpected error: {type(err).__name__}: {err}"))
            finally:
                self._running.pop(job_id, None)
                self._fresh.pop(job_id, None)

    async def _execute(self, job_id: str) -> None:
        started = self._fresh.pop(job_id, None)
        if started is None:  # resumed after a restart: read it back and mark it running
            started = await self.db.run_write(functools.partial(_start_job, job_id=job_id, now=self.clock.now()))
            if started is None:
                return
        prediction_id, model_name, params, num_outputs, account_id, prompt, started_at = started
        self._running[job_id] = started_at or self.clock.now()
        started_at = self._running[job_id]
        spec = self.settings.models.get(model_name)
        if spec is None:
            raise InvalidRequest(f"model {model_name!r} is no longer configured", field="model")
        timeout = self.settings.replicate.timeout_seconds
        began = time.monotonic()
        if prediction_id:
            state: PredictionState = await self.provider.wait(
                prediction_id, timeout=max(0.0, timeout - (self.clock.now() - started_at).total_seconds())
            )
        else:
            state = await self.provider.create(
                ProviderInput(
                    model_name=model_name,
                    model=spec,
                    prompt=str(params.get("styled_prompt") or prompt),
                    aspect_ratio=str(params.get("aspect_ratio") or "1:1"),
                    num_outputs=num_outputs,
                    output_format=self.settings.generation.output_format,
                    seed=params.get("seed"),
                )
            )
            self._prediction_ids[job_id] = state.id
            if not state.done:
                # Durability: from here on a restart must find the prediction to resume it.
                await self.db.run_write(
                    functools.partial(_set_job_running, job_id=job_id, prediction_id=state.id, started_at=started_at)
                )
                state = await self.provider.wait(state.id, timeout=max(0.0, timeout - (time.monotonic() - began)))
        with self._finishing():
            if state.status == "failed":
                raise ModelFailed(f"the model failed: {state.error or 'no error message given'}")
            if state.status == "canceled":
                raise GenerationCanceled("the prediction was canceled")
            outputs = list(state.outputs)[:num_outputs]
            if not outputs:
                raise ProviderError("the model finished without any output")
            stored: list[tuple[dict[str, Any], bytes] | BaseException]
            if len(outputs) == 1:  # the usual case, without a task per output (one more trip through the loop's queue)
                try:
                    stored = [await self._store(outputs[0])]
                except Exception as err:
                    stored = [err]
            else:
                stored = await asyncio.gather(*(self._store(o) for o in outputs), return_exceptions=True)
            good = [(i, s) for i, s in enumerate(stored) if not isinstance(s, BaseException)]
            if not good:
                first = next(s for s in stored if isinstance(s, BaseException))
                if isinstance(first, ShowmeError):
                    raise first
                raise OutputDownloadFailed(f"could not store the output: {first}")
            await self._succeed(job_id, account_id, model_name, prompt, params, [(i, meta) for i, (meta, _) in good])
        self._thumbnail_queue.extend((job_id, index, data) for index, (_, data) in good)
        if self._thumbnail_worker is None or self._thumbnail_worker.done():
            self._thumbnail_worker = asyncio.create_task(self._make_thumbnails())
            self._background.add(self._thumbnail_worker)
            self._thumbnail_worker.add_done_callback(self._background.discard)

    @contextlib.contextmanager
    def _finishing(self) -> Iterator[None]:
        """Mark a job between its prediction's end and its answer. Thumbnails wait while any job is here:
        the caller of that job is waiting, the thumbnails' owner is not."""
        self._finishing_jobs += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._finishing_jobs -= 1
            if not self._finishing_jobs:
                self._quiet.set()

    async def _download(self, output: ProviderOutput) -> bytes:
        cfg = self.settings.generation
        last: Exception | None = None
        for attempt in range(cfg.download_attempts):
            try:
                async with asyncio.timeout(cfg.download_timeout_seconds):
                    data = await output.read()
                if not data:
                    raise ValueError("empty response body")
                return data
            except (OutputReadError, httpx.HTTPError, TimeoutError, ValueError) as err:
                last = err
                log.warning("download of %s failed (attempt %d): %r", output.url, attempt + 1, err)
            if attempt + 1 < cfg.download_attempts:
                backoff = cfg.download_backoff_seconds
                await self._sleep(backoff[min(attempt, len(backoff) - 1)] if backoff else 0)
        raise OutputDownloadFailed(
            f"could not download the output after {cfg.download_attempts} attempts: {type(last).__name__}: {last}"
        )

    async def _store(self, output: ProviderOutput) -> tuple[dict[str, Any], bytes]:
        data = await self._download(output)
        try:
            info = probe_image(data)  # header only: tens of microseconds, no pixel decoding
        except NotAnImage as err:
            raise OutputDownloadFailed(f"the output at {output.url} is not an image: {err}") from err
        blob = await self.blobs.put(data, info.ext)
        meta = {
            "blob_key": blob.key,
            "sha256": blob.sha256,
            "size_bytes": blob.size_bytes,
            "mime": info.mime,
            "width": info.width,
            "height": info.height,
            "thumb_key": None,
        }
        return meta, data

    def _in_background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _make_thumbnails(self) -> None:
        """Thumbnails of finished jobs' images, several per call to one worker (a process by default) at the
        lowest CPU priority, so they never hold the GIL that requests in flight need; then their keys in one
        write. A burst of jobs finishes together: its thumbnails wait until no job is being finished (at
        most ``THUMBNAIL_MAX_DEFER`` seconds), since handing each one to the worker and storing it cost about
        1.7 ms of this process's CPU per image, right when the burst's answers need it."""
        loop = asyncio.get_running_loop()
        while self._thumbnail_queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.THUMBNAIL_MAX_DEFER):
                    await self._quiet.wait()
            batch = self._thumbnail_queue[: self.THUMBNAIL_BATCH]
            del self._thumbnail_queue[: self.THUMBNAIL_BATCH]
            try:
                images = [data for _, _, data in batch]
                pixels = self.settings.media.thumbnail_pixels
                thumbs = await loop.run_in_executor(self._thumbnailer, make_thumbnails, images, pixels)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("thumbnails for %d images failed; the full images are used instead", len(batch))
                continue
            rows: list[dict[str, Any]] = []
            for (job_id, index, _), thumb in zip(batch, thumbs, strict=True):
                if isinstance(thumb, str):
                    log.warning("no thumbnail for job %s output %d (%s); the full image is used", job_id, index, thumb)
                    continue
                try:
                    stored = await self.blobs.put(thumb, ".webp", prefix="thumbs/")
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("storing the thumbnail of job %s output %d failed", job_id, index)
                    continue
                rows.append({"job": job_id, "index": index, "thumb": stored.key})
            if not rows:
                continue

            try:
                await self.db.run_write(functools.partial(_set_thumbnails, rows=rows))
            except Exception:
                log.exception("could not record %d thumbnails; the full images are used instead", len(rows))

    async def _succeed(
        self,
        job_id: str,
        account_id: int,
        model_name: str,
        prompt: str,
        params: dict[str, Any],
        stored: list[tuple[int, dict[str, Any]]],
    ) -> None:
        prediction_id = self._prediction_ids.pop(job_id, None)
        started_at = self._running.get(job_id)
        tags = ",".join(t for t in (model_name, params.get("style")) if t)

        now = self.clock.now()
        assets = [
            {
                "account_id": account_id,
                "job_id": job_id,
                "output_index": index,
                "kind": "image",
                "name": prompt[:120],
                "description": "",
                "tags": tags,
                "category": "generated",
                "folder": None,
                "favorite": False,
                "prompt": prompt,
                "model": model_name,
                "use_count": 0,
                "view_count": 0,
                "created_at": now,
                "updated_at": now,
                **blob,
            }
            for index, blob in stored
        ]
        finish = functools.partial(
            _finish_job,
            credits=self.credits,
            job_id=job_id,
            account_id=account_id,
            assets=assets,
            started_at=started_at,
            finished_at=now,
            prediction_id=prediction_id,
        )
        finished = await self.db.run_write(finish, account=account_id)
        if finished is None:
            return
        self.library.invalidate(account_id)  # the new images are searchable by their prompt
        job, rows = finished
        self._notify("image_generated", self._remember(self._view(job, [self.library.view(a) for a in rows])))

    def _remember(self, view: JobView) -> JobView:
        """Keep a finished job a minute for later waiters, and wake the present ones with it."""
        self._running.pop(view.id, None)
        # Expired entries go here rather than by a timer each: a burst's hundred 60 s timers sat in the
        # event loop's timer heap, whose every push and pop compares them in Python.
        now = time.monotonic()
        finished = self._finished
        while finished:
            oldest = next(iter(finished))
            if finished[oldest][0] > now:
                break
            del finished[oldest]
        finished.pop(view.id, None)
        finished[view.id] = (now + 60, view)
        for waiter in self._waiters.pop(view.id, []):
            if not waiter.done():
                waiter.set_result(view)
        return view

    async def _fail(self, job_id: str, err: ShowmeError) -> None:
        prediction_id = self._prediction_ids.pop(job_id, None)
        started_at = self._running.get(job_id)

        fail = functools.partial(
            _fail_job,
            credits=self.credits,
            job_id=job_id,
            status="canceled" if isinstance(err, GenerationCanceled) else "failed",
            error_code=err.code,
            error=err.message,
            prediction_id=prediction_id,
            started_at=started_at,
            finished_at=self.clock.now(),
        )
        await self.db.run_write(fail)
        self._notify("generation_failed", self._remember(await self.get(job_id)))

    # -- restart -------------------------------------------------------------------------------------

    async def resume_unfinished(self) -> tuple[list[str], list[str]]:
        """Take over unfinished jobs whose runner stopped renewing its lease.

        Jobs with a prediction id are resumed (polled to the end); the others are failed and their hold
        released. Returns ``(resumed job ids, failed job ids)``.
        """
        now = self.clock.now()
        lease = timedelta(seconds=self.settings.generation.lease_seconds)
        async with self.db.read() as session:
            candidates = (
                await session.scalars(
                    select(Job.id).where(
                        Job.status.in_(ACTIVE), or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
                    )
                )
            ).all()
        resumed: list[str] = []
        failed: list[str] = []
        for job_id in candidates:
            async with self.db.write() as session:
                claimed = await session.execute(
                    update(Job)
                    .where(
                        Job.id == job_id,
                        Job.status.in_(ACTIVE),
                        or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now),
                    )
                    .values(lease_owner=self.runner_id, lease_expires_at=now + lease)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                prediction_id = await session.scalar(select(Job.prediction_id).where(Job.id == job_id))
            if prediction_id:
                resumed.append(job_id)
                self._spawn(job_id)
            else:
                failed.append(job_id)
                await self._fail(
                    job_id,
                    ProviderError(
                        "the generation was interrupted before the provider accepted it; nothing was charged"
                    ),
                )
        return resumed, failed

    async def drain(self) -> None:
        """Wait for every job this process is running, and their thumbnails."""
        while self._tasks or self._background:
            await asyncio.gather(*list(self._tasks.values()), *list(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Cancel running jobs (their leases lapse; another process resumes them) and wait for the tasks."""
        tasks = [*self._tasks.values(), *self._background]
        if self._lease_keeper is not None:
            tasks.append(self._lease_keeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._thumbnailer.shutdown(wait=False, cancel_futures=True)
