"""Team SQL: members, one-time login and invite links, shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from storage.db import Database
from storage.errors import DuplicateKey
from storage.models import Account, Asset, Folder
from storage.repositories import dialect_insert
from storage.team_models import LoginToken, Member, Share


@dataclass(frozen=True)
class MemberRecord:
    id: int
    account_id: int
    email: str
    role: str
    created_at: datetime
    account_name: str = ""


@dataclass(frozen=True)
class TokenRecord:
    purpose: str
    email: str
    account_id: int | None
    role: str | None


@dataclass(frozen=True)
class ShareRecord:
    id: int
    account_id: int
    asset_id: int | None
    folder_id: int | None
    email: str
    permission: str
    created_at: datetime
    target_name: str = ""


class TeamRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def members(self, account_id: int) -> list[MemberRecord]:
        """The account's members, owners first, then by email."""
        stmt = select(Member).where(Member.account_id == account_id).order_by(Member.email)
        async with self.db.read() as session:
            rows = (await session.scalars(stmt)).all()
        rank = {"owner": 0, "admin": 1, "member": 2}
        return sorted((MemberRecord(m.id, m.account_id, m.email, m.role, m.created_at) for m in rows),
                      key=lambda m: (rank.get(m.role, 3), m.email))  # fmt: skip

    async def memberships(self, email: str) -> list[MemberRecord]:
        """Every account ``email`` belongs to, with the account's name, oldest membership first."""
        stmt = (
            select(Member, Account.name).join(Account, Account.id == Member.account_id)
            .where(Member.email == email).order_by(Member.created_at, Member.id)
        )  # fmt: skip
        async with self.db.read() as session:
            return [MemberRecord(m.id, m.account_id, m.email, m.role, m.created_at, name)
                    for m, name in (await session.execute(stmt)).all()]  # fmt: skip

    async def add_member(self, account_id: int, email: str, role: str, now: datetime) -> bool:
        """Make ``email`` a member with ``role``; False (nothing changed) when already one."""
        async with self.db.write() as session:
            stmt = (
                dialect_insert(session)(Member)
                .values(account_id=account_id, email=email, role=role, created_at=now)
                .on_conflict_do_nothing(index_elements=["account_id", "email"])
            )
            return bool((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def change_member(self, account_id: int, member_id: int, role: str | None) -> str:
        """Set the member's ``role`` (None removes them), keeping at least one owner: the change is one
        conditional statement. Returns ``done``, ``last_owner`` or ``missing``."""
        owners = (select(func.count()).select_from(Member)
                  .where(Member.account_id == account_id, Member.role == "owner").scalar_subquery())  # fmt: skip
        target = (Member.id == member_id, Member.account_id == account_id)
        keeps_owner = (Member.role != "owner") | (owners > 1) if role != "owner" else Member.id == Member.id
        async with self.db.write() as session:
            if role is None:
                result = await session.execute(delete(Member).where(*target, keeps_owner))
            else:
                result = await session.execute(update(Member).where(*target, keeps_owner).values(role=role))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return "done"
            there = await session.scalar(select(Member.id).where(*target))
        return "missing" if there is None else "last_owner"

    async def add_token(
        self, token_hash: str, purpose: str, email: str, expires_at: datetime, now: datetime,
        *, account_id: int | None = None, role: str | None = None, created_by: str | None = None,
    ) -> None:  # fmt: skip
        """Keep a new link's hash."""
        async with self.db.write() as session:
            session.add(LoginToken(
                token_hash=token_hash, purpose=purpose, email=email, account_id=account_id, role=role,
                created_by=created_by, expires_at=expires_at, created_at=now,
            ))  # fmt: skip

    async def use_token(self, token_hash: str, now: datetime) -> TokenRecord | None:
        """Mark the link used and return it, in one conditional update, when it exists, is unused and has not
        expired; for an invite, its member is added in the same transaction. None otherwise."""
        stmt = (
            update(LoginToken)
            .where(LoginToken.token_hash == token_hash, LoginToken.used_at.is_(None), LoginToken.expires_at > now)
            .values(used_at=now)
            .returning(LoginToken.purpose, LoginToken.email, LoginToken.account_id, LoginToken.role)
        )
        async with self.db.write() as session:
            row = (await session.execute(stmt)).first()
            if row is None:
                return None
            token = TokenRecord(row.purpose, row.email, row.account_id, row.role)
            if token.purpose == "invite" and token.account_id is not None:
                await session.execute(
                    dialect_insert(session)(Member)
                    .values(account_id=token.account_id, email=token.email, role=token.role or "member",
                            created_at=now)
                    .on_conflict_do_nothing(index_elements=["account_id", "email"])
                )  # fmt: skip
        return token

    async def share(
        self, account_id: int, email: str, permission: str, now: datetime, *, asset_id: int | None = None,
        folder_id: int | None = None, created_by: str | None = None,
    ) -> None:  # fmt: skip
        """Share the asset or folder with ``email`` (a second share of the same target replaces the first's
        permission). Raises ``DuplicateKey`` when the target is not the account's."""
        target = (Share.asset_id == asset_id) if asset_id is not None else (Share.folder_id == folder_id)
        try:
            async with self.db.write() as session:
                owner = await session.scalar(
                    select(Asset.account_id).where(Asset.id == asset_id, Asset.deleted_at.is_(None))
                    if asset_id is not None else select(Folder.account_id).where(Folder.id == folder_id)
                )  # fmt: skip
                if owner != account_id:
                    raise DuplicateKey("asset_id" if asset_id is not None else "folder_id")
                changed = await session.execute(
                    update(Share).where(target, Share.email == email).values(permission=permission)
                )
                if changed.rowcount == 0:  # type: ignore[attr-defined]
                    session.add(Share(account_id=account_id, asset_id=asset_id, folder_id=folder_id, email=email,
                                      permission=permission, created_by=created_by, created_at=now))  # fmt: skip
        except IntegrityError as err:  # a concurrent share of the same target: the caller may retry
            raise DuplicateKey("email") from err

    async def unshare(self, account_id: int, share_id: int) -> bool:
        """Remove the account's share; False when there was none."""
        async with self.db.write() as session:
            done = await session.execute(delete(Share).where(Share.id == share_id, Share.account_id == account_id))
        return bool(done.rowcount == 1)  # type: ignore[attr-defined]

    async def shares_with(self, email: str) -> list[ShareRecord]:
        """Everything shared with ``email``, newest first."""
        return await self._shares(Share.email == email)

    async def shares_of(self, account_id: int) -> list[ShareRecord]:
        """Everything the account shared, newest first."""
        return await self._shares(Share.account_id == account_id)

    async def _shares(self, where: object) -> list[ShareRecord]:
        stmt = (
            select(Share, Asset.name, Folder.name)
            .outerjoin(Asset, Asset.id == Share.asset_id).outerjoin(Folder, Folder.id == Share.folder_id)
            .where(where).order_by(Share.created_at.desc(), Share.id.desc())  # type: ignore[arg-type]
        )  # fmt: skip
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [ShareRecord(s.id, s.account_id, s.asset_id, s.folder_id, s.email, s.permission, s.created_at,
                            asset_name or folder_name or "") for s, asset_name, folder_name in rows]  # fmt: skip

    async def folder_chain(self, folder_id: int | None) -> list[int]:
        """``folder_id`` and every folder above it."""
        chain: list[int] = []
        async with self.db.read() as session:
            while folder_id is not None and folder_id not in chain:
                chain.append(folder_id)
                folder_id = await session.scalar(select(Folder.parent_id).where(Folder.id == folder_id))
        return chain
