"""Generation jobs' SQL: the job row and its hold in one transaction, state changes, leases, conversations.

A job's charge moves ``held → settled | released`` once (``storage.repositories.credits``); its status moves
``queued → running → succeeded | failed | canceled`` by conditional updates, so a job finished by one process
is not finished again by another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.errors import DuplicateKey
from storage.models import Asset, AssetUse, Job
from storage.records import AssetRecord, JobRecord, record
from storage.repositories import credits, custom_models, dialect_insert
from storage.repositories.assets import write_tags

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
        provider=func.coalesce(bindparam("by_provider", type_=Job.provider.type), Job.provider),
        provider_switches=func.coalesce(bindparam("switches", type_=Job.provider_switches.type), Job.provider_switches),
        cost_microusd=bindparam("cost_usd_micro", type_=Job.cost_microusd.type),
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
_ASSET_INSERTS: dict[str, Any] = {}


@dataclass(frozen=True)
class Created:
    """What ``create`` did: ``existing`` is ``(job id, request hash)`` of the job that already had the
    idempotency key (nothing written), else the hold's ``unit`` and ``amount``."""

    unit: str = "credit"
    amount: int = 0
    existing: tuple[str, str] | None = None


@dataclass(frozen=True)
class Finished:
    """A job that ``finish`` moved to ``succeeded``, with its asset rows in output order."""

    job: JobRecord
    assets: list[AssetRecord]


def _create(
    conn: Connection, values: dict[str, Any], options: Sequence[tuple[str, int]], reuse_key: bool, now: datetime
) -> Created:
    account_id = values["account_id"]
    credits.lock_account(conn, account_id)
    if reuse_key:
        existing = conn.execute(_BY_KEY, {"account": account_id, "key": values["idempotency_key"]}).first()
        if existing is not None:
            return Created(existing=(existing.id, existing.request_hash))
    unit, amount, _ = credits.hold(
        conn, account_id=account_id, job_id=values["id"], options=options, model=values["model"], now=now
    )
    conn.execute(insert(Job), {**values, "unit": unit, "cost": amount})
    return Created(unit, amount)


def _set_running(conn: Connection, job_id: str, prediction_id: str, started_at: datetime) -> None:
    conn.execute(
        update(Job).where(Job.id == job_id).values(prediction_id=prediction_id, status="running", started_at=started_at)
    )


def _start(conn: Connection, job_id: str, now: datetime) -> JobRecord | None:
    row = conn.execute(select(*Job.__table__.c).where(Job.id == job_id)).first()
    if row is None or row.status in FINISHED:
        return None
    started_at = row.started_at or now
    conn.execute(update(Job).where(Job.id == job_id).values(status="running", started_at=started_at))
    job = record(JobRecord, row)
    return JobRecord(**{**job.__dict__, "status": "running", "started_at": started_at})


def _asset_insert(conn: Connection) -> Any:
    """``INSERT … ON CONFLICT (job_id, output_index) DO NOTHING RETURNING *`` for the connection's dialect
    (built once per dialect: building it costs more than running it on SQLite)."""
    statement = _ASSET_INSERTS.get(conn.dialect.name)
    if statement is None:
        statement = _ASSET_INSERTS[conn.dialect.name] = (
            dialect_insert(conn)(Asset)
            .on_conflict_do_nothing(index_elements=["job_id", "output_index"])
            .returning(*Asset.__table__.c)
        )
    return statement


def _finish(
    conn: Connection,
    job_id: str,
    account_id: int,
    assets: list[dict[str, Any]],
    times: tuple[datetime | None, datetime],
    prediction_id: str | None,
    facts: dict[str, Any] | None = None,
) -> Finished | None:
    credits.lock_account(conn, account_id, verify=False)
    started_at, finished_at = times
    facts = facts or {}
    params = {"job": job_id, "started": started_at, "finished": finished_at, "prediction": prediction_id,
              "by_provider": facts.get("provider"), "switches": facts.get("provider_switches"),
              "cost_usd_micro": facts.get("cost_microusd")}  # fmt: skip
    row = conn.execute(_JOB_SUCCEEDED, params).first()
    if row is None:  # no such job, or it had finished
        return None
    rows = list(conn.execute(_asset_insert(conn), assets)) if assets else []
    write_tags(conn, [(r.id, r.account_id, r.tags, r.created_at) for r in rows])
    job = record(JobRecord, row)
    used = (job.cost // job.num_outputs if job.num_outputs else job.cost) * len(assets)
    if facts.get("custom_model"):  # a training: its model is registered and its whole price settled, once
        custom_models.register(conn, facts["custom_model"])
        used = job.cost
    if credits.settle(conn, job_id, used, finished_at, account_locked=True):
        job = JobRecord(**{**job.__dict__, "charge_state": "settled", "charged": used})
    return Finished(job, sorted((record(AssetRecord, r) for r in rows), key=lambda a: a.output_index or 0))


def _fail(conn: Connection, job_id: str, outcome: dict[str, Any], times: tuple[datetime | None, datetime]) -> None:
    started_at, finished_at = times
    credits.release(conn, job_id, outcome["error_code"], finished_at)
    found = {k: outcome[k] for k in ("prediction_id", "provider", "provider_switches") if outcome.get(k)}
    if found:
        conn.execute(update(Job).where(Job.id == job_id).values(**found))
    conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE))
        .values(
            started_at=func.coalesce(Job.started_at, started_at),
            status=outcome["status"],
            error_code=outcome["error_code"],
            error=outcome["error"],
            finished_at=finished_at,
            lease_owner=None,
        )
    )


def _renew_leases(conn: Connection, ids: list[str], owner: str, expires: datetime) -> None:
    conn.execute(_RENEW_LEASES, {"ids": ids, "owner": owner, "expires": expires})


def _set_thumbnails(conn: Connection, rows: list[dict[str, Any]]) -> None:
    conn.execute(_SET_THUMB, rows)


def _bind_prediction(conn: Connection, job_id: str, prediction_id: str) -> bool:
    bound = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE),
               or_(Job.prediction_id.is_(None), Job.prediction_id == prediction_id))
        .values(prediction_id=prediction_id)
    )  # fmt: skip
    return bool(bound.rowcount)


def _claim(
    conn: Connection,
    job_id: str,
    owner: str,
    now: datetime,
    expires: datetime,
    stale: tuple[str, datetime] | None = None,
) -> JobRecord | None:
    lapsed = or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
    if stale is not None:  # or still held by ``stale``'s owner, not renewed since ``stale``'s expiry
        lapsed = or_(lapsed, and_(Job.lease_owner == stale[0], Job.lease_expires_at <= stale[1]))
    claimed = conn.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE), lapsed)
        .values(lease_owner=owner, lease_expires_at=expires)
        .returning(*Job.__table__.c)
    ).first()
    return None if claimed is None else record(JobRecord, claimed)


class JobRepository:
    """Jobs of every account. Each write is a transaction of its own (``Database.run_write``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, values: dict[str, Any], options: Sequence[tuple[str, int]], *, reuse_key: bool, now: datetime
    ) -> Created:
        """Insert the job row ``values`` (every column but ``unit`` and ``cost``) and hold the first of
        ``options`` the account covers (``credits.hold``), in one transaction. With ``reuse_key``, a job
        of the account that already has the idempotency key is returned instead and nothing is written.

        Raises:
            AccountMissing: no such account.
            NotEnoughUnits: no option is covered; nothing written.
            DuplicateKey: another process inserted the same idempotency key meanwhile (``idempotency_key``).
        """
        try:
            return await self.db.run_write(_create, values, list(options), reuse_key, now, account=values["account_id"])
        except IntegrityError as err:
            raise DuplicateKey("idempotency_key") from err

    async def by_key(self, account_id: int, key: str) -> tuple[str, str] | None:
        """``(job id, request hash)`` of the account's job with idempotency key ``key``."""
        async with self.db.read() as session:
            row = (await session.execute(_BY_KEY, {"account": account_id, "key": key})).first()
        return None if row is None else (row.id, row.request_hash)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job, or None."""
        async with self.db.read() as session:
            row = (await session.execute(select(*Job.__table__.c).where(Job.id == job_id))).first()
        return None if row is None else record(JobRecord, row)

    async def set_running(self, job_id: str, prediction_id: str, started_at: datetime) -> None:
        """Save the prediction id (a restart resumes the job by it) and mark the job running."""
        await self.db.run_write(_set_running, job_id, prediction_id, started_at)

    async def start(self, job_id: str, now: datetime) -> JobRecord | None:
        """Mark a resumed job running; the job, or None when it does not exist or has finished."""
        return await self.db.run_write(_start, job_id, now)

    async def finish(
        self,
        job_id: str,
        account_id: int,
        assets: list[dict[str, Any]],
        times: tuple[datetime | None, datetime],
        prediction_id: str | None,
        facts: dict[str, Any] | None = None,
    ) -> Finished | None:
        """Insert the job's asset rows (``assets``: column values each, with ``output_index``), settle what
        they cost and mark the job ``succeeded``, in one transaction. ``times`` is ``(started, finished)``;
        ``facts`` may give ``provider``, ``provider_switches``, ``cost_microusd``, and for a training the
        ``custom_model`` row to register (its whole price is settled). None when the job had already finished."""
        return await self.db.run_write(
            _finish, job_id, account_id, assets, times, prediction_id, facts, account=account_id
        )

    async def fail(self, job_id: str, outcome: dict[str, Any], times: tuple[datetime | None, datetime]) -> None:
        """Release the job's hold and mark it ``outcome["status"]`` (failed or canceled) with ``error_code``,
        ``error``, ``prediction_id``, ``provider`` and ``provider_switches``, if it is still active."""
        await self.db.run_write(_fail, job_id, outcome, times)

    async def renew_leases(self, ids: list[str], owner: str, expires: datetime) -> None:
        """Extend the leases ``owner`` holds on the jobs ``ids`` to ``expires``."""
        await self.db.run_write(_renew_leases, ids, owner, expires)

    async def set_thumbnails(self, rows: list[dict[str, Any]]) -> None:
        """Record thumbnail keys: ``rows`` of ``{"job", "index", "thumb"}``."""
        await self.db.run_write(_set_thumbnails, rows)

    async def lapsed(self, now: datetime) -> list[str]:
        """Unfinished jobs whose lease expired before ``now`` (or never had one)."""
        stmt = select(Job.id).where(
            Job.status.in_(ACTIVE), or_(Job.lease_expires_at.is_(None), Job.lease_expires_at < now)
        )
        async with self.db.read() as session:
            return list((await session.scalars(stmt)).all())

    async def claim(
        self, job_id: str, owner: str, now: datetime, expires: datetime, *, stale: tuple[str, datetime] | None = None
    ) -> JobRecord | None:
        """Take over a lapsed job's lease for ``owner`` until ``expires``; the job, or None when another
        process took it first or it finished. ``stale`` (``(lease owner, lease expiry)`` seen earlier) also
        takes a lease its owner has not renewed since: an owner that stopped before its lease ran out."""
        return await self.db.run_write(_claim, job_id, owner, now, expires, stale)

    async def bind_prediction(self, job_id: str, prediction_id: str) -> bool:
        """Record the provider's prediction id of an unfinished job that has none yet (the id a webhook
        brought); False when the job finished or has another prediction."""
        return await self.db.run_write(_bind_prediction, job_id, prediction_id)

    async def recent_conversations(self, account_id: int, limit: int) -> list[tuple[str, datetime, int]]:
        """The account's newest ``limit`` conversations with jobs: ``(conversation id, last job, jobs)``."""
        last, jobs = func.max(Job.created_at), func.count()
        stmt = (
            select(Job.conversation_id, last, jobs)
            .where(Job.account_id == account_id, Job.conversation_id.is_not(None))
            .group_by(Job.conversation_id).order_by(last.desc()).limit(limit)
        )  # fmt: skip
        async with self.db.read() as session:
            return [(str(c), at, int(n)) for c, at, n in (await session.execute(stmt)).all()]

    async def conversation_account(self, conversation_id: str) -> int | None:
        """The account whose jobs or library pushes served ``conversation_id``."""
        async with self.db.read() as session:
            account = await session.scalar(
                select(Job.account_id).where(Job.conversation_id == conversation_id).limit(1)
            )
            if account is None:
                account = await session.scalar(
                    select(AssetUse.account_id).where(AssetUse.conversation_id == conversation_id).limit(1)
                )
        return account

    async def conversation_prompts(self, account_id: int, conversation_id: str) -> list[str]:
        """Prompts of the account's jobs in the conversation."""
        stmt = select(Job.prompt).where(Job.account_id == account_id, Job.conversation_id == conversation_id)
        async with self.db.read() as session:
            return list((await session.scalars(stmt)).all())

    async def conversation_images(
        self, account_id: int, conversation_id: str, limit: int
    ) -> list[tuple[AssetRecord, JobRecord]]:
        """The newest ``limit`` generated images of the conversation with their jobs, newest first."""
        stmt = (
            select(Asset, Job)
            .join(Job, Job.id == Asset.job_id)
            .where(Job.account_id == account_id, Job.conversation_id == conversation_id, Asset.deleted_at.is_(None))
            .order_by(Job.finished_at.desc())
            .limit(limit)
        )
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [(record(AssetRecord, asset), record(JobRecord, job)) for asset, job in rows]
