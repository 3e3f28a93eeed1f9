"""Teams: an account's members (email identities) with a role, one-time login and invite links, and assets or
folders shared with a person by email.

Roles: ``owner`` and ``admin`` do everything; a ``member`` generates, uploads and uses the library but does not
buy, manage API keys or manage members (``can_manage``). A person outside the account sees only what was shared
with them: ``view`` (see it), ``use`` (also download it and record its uses) or ``edit`` (also change its
details).

Links are ``<random 32 bytes>.<HMAC-SHA256 of it and its purpose>`` (base64url): a forged one is refused before
the database is asked; the database keeps only the SHA-256 of a link and marks it used in one conditional
update, so a link signs in once, before it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from core.clock import Clock
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from core.library import AssetView
from storage.errors import DuplicateKey
from storage.repositories.teams import MemberRecord, ShareRecord, TeamRepository, TokenRecord

log = logging.getLogger(__name__)

ROLES = ("owner", "admin", "member")
PERMISSIONS = ("view", "use", "edit")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_RANK = {"view": 1, "use": 2, "edit": 3, "member": 4}


def normalize_email(email: str, field: str = "email") -> str:
    """``email`` trimmed and lower-cased; raises ``InvalidRequest`` naming ``field`` when it is not one."""
    cleaned = str(email).strip().lower()
    if len(cleaned) > 254 or not _EMAIL.match(cleaned):
        raise InvalidRequest(f"{field} is not an email address", field=field)
    return cleaned


def can_manage(role: str | None) -> bool:
    """True for the roles that buy credits and manage API keys and members."""
    return role in ("owner", "admin")


class EmailSender(Protocol):
    async def send(self, to: str, subject: str, text: str) -> None:
        """Deliver one plain-text email."""
        ...


class StdoutEmailSender:
    """Writes each email to standard output instead of sending it (the default sender: the operator copies
    the link, or a mail relay in front reads it)."""

    async def send(self, to: str, subject: str, text: str) -> None:
        """Print the email (``To``, ``Subject``, body)."""
        sys.stdout.write(f"--- email to {to}: {subject}\n{text}\n---\n")
        sys.stdout.flush()


@dataclass(frozen=True)
class Person:
    """Who is signed in to the web app: ``email``, the account they act in (None when they belong to none)
    and their role there."""

    email: str
    account_id: int | None
    role: str | None


class Teams:
    """Members, links and shares. ``secret`` signs links; ``login_ttl`` and ``invite_ttl`` are seconds."""

    def __init__(
        self, repository: TeamRepository, clock: Clock, secret: bytes, sender: EmailSender, base_url: str,
        *, login_ttl: float = 900, invite_ttl: float = 7 * 86400,
    ) -> None:  # fmt: skip
        self.repository = repository
        self.clock = clock
        self.secret = secret
        self.sender = sender
        self.base_url = base_url.rstrip("/")
        self.login_ttl = login_ttl
        self.invite_ttl = invite_ttl

    # -- members ----------------------------------------------------------------------------------------------

    async def members(self, account_id: int) -> list[MemberRecord]:
        """The account's members, owners first."""
        return await self.repository.members(account_id)

    async def memberships(self, email: str) -> list[MemberRecord]:
        """The accounts ``email`` belongs to, oldest membership first."""
        return await self.repository.memberships(normalize_email(email))

    async def add_member(self, account_id: int, email: str, role: str) -> bool:
        """Make ``email`` a member (the CLI's way to name an account's first owner); False when already one.

        Raises:
            InvalidRequest: a bad email or an unknown role.
        """
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", field="role")
        return await self.repository.add_member(account_id, normalize_email(email), role, self.clock.now())

    async def change_member(self, account_id: int, member_id: int, role: str | None) -> None:
        """Change a member's role, or remove them with ``role`` None.

        Raises:
            InvalidRequest: an unknown role.
            NotFound: no such member.
            Conflict: it would leave the account without an owner.
        """
        if role is not None and role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", field="role")
        outcome = await self.repository.change_member(account_id, member_id, role)
        if outcome == "missing":
            raise NotFound(f"member {member_id} does not exist")
        if outcome == "last_owner":
            raise Conflict("an account keeps at least one owner: make someone else owner first")

    async def person(self, email: str, account_id: int | None) -> Person:
        """``email`` acting in ``account_id`` (their first account when None or not theirs)."""
        memberships = await self.repository.memberships(email)
        chosen = next((m for m in memberships if m.account_id == account_id), memberships[0] if memberships else None)
        return Person(email, chosen.account_id if chosen else None, chosen.role if chosen else None)

    # -- links ------------------------------------------------------------------------------------------------

    def _sign(self, raw: str, purpose: str) -> str:
        mac = hmac.new(self.secret, f"{purpose}:{raw}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:16]).decode().rstrip("=")

    async def _link(self, purpose: str, email: str, ttl: float, **extra: object) -> str:
        raw = secrets.token_urlsafe(32)
        token = f"{raw}.{self._sign(raw, purpose)}"
        now = self.clock.now()
        await self.repository.add_token(
            hashlib.sha256(token.encode()).hexdigest(),
            purpose,
            email,
            now + timedelta(seconds=ttl),
            now,
            **extra,  # type: ignore[arg-type]
        )
        return f"{self.base_url}/app/{'login' if purpose == 'login' else 'invite'}/{token}"

    async def login_link(self, email: str) -> str:
        """A one-time sign-in link for ``email`` (valid ``login_ttl`` seconds).

        Raises:
            InvalidRequest: not an email address.
        """
        return await self._link("login", normalize_email(email), self.login_ttl)

    async def send_login_link(self, email: str) -> bool:
        """Email a sign-in link when ``email`` belongs to an account or has something shared with it; False
        (nothing sent) otherwise. The web page says the same either way."""
        email = normalize_email(email)
        if not await self.repository.memberships(email) and not await self.repository.shares_with(email):
            return False
        link = await self.login_link(email)
        await self.sender.send(email, "Your showme sign-in link", f"Sign in to showme:\n{link}\n"
                               f"The link works once, within {int(self.login_ttl // 60)} minutes.")  # fmt: skip
        return True

    async def invite(self, account_id: int, email: str, role: str, invited_by: str) -> str:
        """Invite ``email`` to the account with ``role``: emails them a one-time link (valid ``invite_ttl``
        seconds) and returns it.

        Raises:
            InvalidRequest: a bad email or role.
        """
        if role not in ROLES:
            raise InvalidRequest(f"role must be one of {', '.join(ROLES)}", field="role")
        email = normalize_email(email)
        link = await self._link("invite", email, self.invite_ttl, account_id=account_id, role=role,
                                created_by=invited_by)  # fmt: skip
        await self.sender.send(email, "You are invited to showme", f"{invited_by} invited you as {role}:\n{link}\n")
        return link

    async def redeem(self, token: str, purpose: str) -> TokenRecord | None:
        """The link's record when it is ours, of ``purpose``, unused and unexpired (marked used now; an invite
        adds its member); None otherwise."""
        raw, _, mac = token.partition(".")
        if not raw or not hmac.compare_digest(mac, self._sign(raw, purpose)):
            return None
        used = await self.repository.use_token(hashlib.sha256(token.encode()).hexdigest(), self.clock.now())
        return used if used is not None and used.purpose == purpose else None

    # -- shares -----------------------------------------------------------------------------------------------

    async def share(
        self, account_id: int, email: str, permission: str, *, asset_id: int | None = None,
        folder_id: int | None = None, shared_by: str | None = None,
    ) -> None:  # fmt: skip
        """Share an asset or a folder (and what it holds) with ``email``.

        Raises:
            InvalidRequest: a bad email or permission, neither or both targets.
            NotFound: the target is not the account's.
        """
        if permission not in PERMISSIONS:
            raise InvalidRequest(f"permission must be one of {', '.join(PERMISSIONS)}", field="permission")
        if (asset_id is None) == (folder_id is None):
            raise InvalidRequest("share one asset_id or one folder_id", field="asset_id")
        try:
            await self.repository.share(account_id, normalize_email(email), permission, self.clock.now(),
                                        asset_id=asset_id, folder_id=folder_id, created_by=shared_by)  # fmt: skip
        except DuplicateKey as err:
            if err.args and err.args[0] == "email":
                raise Conflict("that share changed meanwhile; try again") from None
            raise NotFound("nothing of that id to share") from None

    async def shares_of(self, account_id: int) -> list[ShareRecord]:
        """What the account shared, newest first."""
        return await self.repository.shares_of(account_id)

    async def unshare(self, account_id: int, share_id: int) -> None:
        """Stop a share; raises ``NotFound`` when the account has no such share."""
        if not await self.repository.unshare(account_id, share_id):
            raise NotFound(f"share {share_id} does not exist")

    async def shared_with(self, email: str) -> list[ShareRecord]:
        """What was shared with ``email``, newest first."""
        return await self.repository.shares_with(email)

    async def access(self, person: Person, asset: AssetView) -> str | None:
        """What ``person`` may do with ``asset``: ``member`` (anything, in their account), else the best
        permission shared with them on it or a folder above it, else None."""
        if person.account_id == asset.account_id and person.role is not None:
            return "member"
        chain = set(await self.repository.folder_chain(asset.folder_id))
        granted = [
            share.permission
            for share in await self.repository.shares_with(person.email)
            if share.asset_id == asset.id or (share.folder_id is not None and share.folder_id in chain)
        ]
        return max(granted, key=_RANK.__getitem__, default=None)

    @staticmethod
    def require(granted: str | None, needed: str) -> None:
        """Raise ``Forbidden`` unless ``granted`` covers ``needed`` (view < use < edit < member)."""
        if granted is None or _RANK[granted] < _RANK[needed]:
            if granted is None:
                raise NotFound("asset does not exist")
            raise Forbidden(f"you may not {needed} this asset: it was shared with you to {granted}")
