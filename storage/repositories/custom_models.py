"""Custom (trained) models of each account: unique per (account, name); written by the transaction that
finishes the training job (``storage.repositories.jobs``), so a training registers its model exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storage.db import Database
from storage.models import CustomModel
from storage.repositories import dialect_insert


@dataclass(frozen=True)
class CustomModelRecord:
    """A ``custom_models`` row: ``ref`` is the trained version (``owner/name:version``)."""

    id: int
    account_id: int
    name: str
    base_model: str
    trigger_word: str
    ref: str
    job_id: str
    created_at: datetime


def register(conn: Connection, values: dict[str, Any]) -> None:
    """Insert the account's model ``values["name"]``, or point an existing one at the new training's version."""
    insert = dialect_insert(conn)(CustomModel).values(**values)
    columns = ("ref", "job_id", "trigger_word", "base_model", "created_at")
    newer = {column: getattr(insert.excluded, column) for column in columns}
    conn.execute(insert.on_conflict_do_update(index_elements=["account_id", "name"], set_=newer))


class CustomModelRepository:
    """Reads of ``custom_models`` (the write is ``register``, inside a job's finish)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, account_id: int, name: str) -> CustomModelRecord | None:
        """The account's model called ``name``, or None (another account's is never returned)."""
        stmt = select(*CustomModel.__table__.c).where(CustomModel.account_id == account_id, CustomModel.name == name)
        async with self.db.read() as session:
            row = (await session.execute(stmt)).first()
        return None if row is None else CustomModelRecord(**row._mapping)

    async def list(self, account_id: int) -> list[CustomModelRecord]:
        """The account's models, newest first."""
        stmt = (
            select(*CustomModel.__table__.c)
            .where(CustomModel.account_id == account_id)
            .order_by(CustomModel.created_at.desc(), CustomModel.id.desc())
        )
        async with self.db.read() as session:
            return [CustomModelRecord(**row._mapping) for row in (await session.execute(stmt)).all()]
