"""Library folders' SQL: nested per account, names unique per parent, deleted only when empty."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from storage.db import Database
from storage.errors import DuplicateKey
from storage.models import Asset, Folder

_CHILD = aliased(Folder)


@dataclass(frozen=True)
class FolderRecord:
    id: int
    account_id: int
    parent_id: int | None
    name: str
    created_at: datetime
    asset_count: int = 0



class FolderQueries:
    """Folder reads and writes (part of ``LibraryRepository``)."""

    db: Database

    async def folders(self, account_id: int) -> list[FolderRecord]:
        """Every folder of the account with its number of live assets, by name."""
        count = (select(func.count()).where(Asset.folder_id == Folder.id, Asset.deleted_at.is_(None))
                 .correlate(Folder).scalar_subquery())  # fmt: skip
        stmt = select(Folder, count).where(Folder.account_id == account_id).order_by(Folder.name, Folder.id)
        async with self.db.read() as session:
            return [FolderRecord(f.id, f.account_id, f.parent_id, f.name, f.created_at, int(c))
                    for f, c in (await session.execute(stmt)).all()]  # fmt: skip

    async def folder(self, folder_id: int) -> FolderRecord | None:
        """The folder (of any account), or None."""
        async with self.db.read() as session:
            f = await session.get(Folder, folder_id)
        return None if f is None else FolderRecord(f.id, f.account_id, f.parent_id, f.name, f.created_at)

    async def create_folder(self, account_id: int, name: str, parent_id: int | None, now: datetime) -> FolderRecord:
        """A new folder; raises ``DuplicateKey`` when its parent already holds one of that name."""
        try:
            async with self.db.write() as session:
                folder = Folder(account_id=account_id, parent_id=parent_id, parent_key=parent_id or 0, name=name,
                                created_at=now)  # fmt: skip
                session.add(folder)
                await session.flush()
                return FolderRecord(folder.id, account_id, parent_id, name, now)
        except IntegrityError as err:
            raise DuplicateKey("name") from err

    async def folder_for_path(self, account_id: int, path: list[str], now: datetime) -> int:
        """The id of the folder at ``path`` (names from the top), creating what is missing."""
        parent: int | None = None
        for name in path:
            stmt = select(Folder.id).where(Folder.account_id == account_id, Folder.parent_key == (parent or 0),
                                           Folder.name == name)  # fmt: skip
            async with self.db.read() as session:
                found = await session.scalar(stmt)
            if found is None:
                try:
                    found = (await self.create_folder(account_id, name, parent, now)).id
                except DuplicateKey:  # made meanwhile by another request
                    async with self.db.read() as session:
                        found = await session.scalar(stmt)
            assert found is not None
            parent = found
        assert parent is not None
        return parent

    async def change_folder(self, account_id: int, folder_id: int, values: dict[str, Any]) -> FolderRecord | None:
        """Rename (``name``) or move (``parent_id``, None for the top) a folder; None when the account has no
        such folder. Raises ``DuplicateKey`` when the new parent already holds that name."""
        if "parent_id" in values:
            values = {**values, "parent_key": values["parent_id"] or 0}
        try:
            async with self.db.write() as session:
                folder = await session.scalar(select(Folder).where(Folder.id == folder_id,
                                                                   Folder.account_id == account_id))  # fmt: skip
                if folder is None:
                    return None
                for column, value in values.items():
                    setattr(folder, column, value)
                await session.flush()
                return FolderRecord(folder.id, account_id, folder.parent_id, folder.name, folder.created_at)
        except IntegrityError as err:
            raise DuplicateKey("name") from err

    async def delete_folder(self, account_id: int, folder_id: int) -> str:
        """Delete the folder when it holds no live asset and no folder, in one conditional statement:
        ``deleted``, ``not_empty`` or ``missing``."""
        empty = and_(
            ~exists().where(Asset.folder_id == folder_id, Asset.deleted_at.is_(None)),
            ~exists().where(_CHILD.parent_id == folder_id),
        )
        async with self.db.write() as session:
            done = await session.execute(
                delete(Folder).where(Folder.id == folder_id, Folder.account_id == account_id, empty)
            )
            if done.rowcount == 1:  # type: ignore[attr-defined]
                return "deleted"
            there = await session.scalar(
                select(Folder.id).where(Folder.id == folder_id, Folder.account_id == account_id)
            )
        return "missing" if there is None else "not_empty"
