"""Viewer tokens: signed, expiring links to one account's one conversation.

Format: ``base64url(json {"a": account_id, "c": conversation_id, "e": expiry unix seconds})`` + ``.`` +
``base64url(HMAC-SHA256(secret, payload))``. Stateless, so every replica sharing ``SHOWME_SECRET_KEY``
accepts every link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.clock import Clock
from core.errors import InvalidRequest, InvalidViewerToken


@dataclass(frozen=True)
class ViewerGrant:
    account_id: int
    conversation_id: str
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_secret(explicit: str | None, path: Path) -> bytes:
    """The signing secret: ``explicit`` (``SHOWME_SECRET_KEY``), else one kept in ``path`` (created once)."""
    if explicit:
        return explicit.encode()
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48).encode()
    path.write_bytes(value)
    path.chmod(0o600)
    return value


def check_conversation_id(conversation_id: str) -> str:
    """Conversation ids are 1–255 printable characters without ``/``; raises ``InvalidRequest``."""
    if not conversation_id or len(conversation_id) > 255 or "/" in conversation_id or not conversation_id.isprintable():
        raise InvalidRequest(
            "conversation_id must be 1 to 255 printable characters without '/'", field="conversation_id"
        )
    return conversation_id


class ViewerTokens:
    def __init__(self, secret: bytes, clock: Clock, ttl_seconds: int) -> None:
        self._secret = secret
        self.clock = clock
        self.ttl_seconds = ttl_seconds

    def mint(self, account_id: int, conversation_id: str, *, ttl_seconds: int | None = None) -> tuple[str, datetime]:
        """Return ``(token, expires_at)`` for one conversation of one account."""
        check_conversation_id(conversation_id)
        expires = int(self.clock.now().timestamp()) + (ttl_seconds or self.ttl_seconds)
        payload = _b64(
            json.dumps({"a": account_id, "c": conversation_id, "e": expires}, separators=(",", ":")).encode()
        )
        signature = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        return f"{payload}.{signature}", datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str | None, conversation_id: str | None = None) -> ViewerGrant:
        """The grant inside a valid token; raises ``InvalidViewerToken`` (missing, forged, expired, or for
        another conversation than ``conversation_id``)."""
        if not token or token.count(".") != 1:
            raise InvalidViewerToken("this viewer link has no valid token; ask for a new link")
        payload, signature = token.split(".")
        expected = _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(signature, expected):
            raise InvalidViewerToken("this viewer link is not valid; ask for a new link")
        try:
            data = json.loads(_unb64(payload))
            grant = ViewerGrant(int(data["a"]), str(data["c"]), datetime.fromtimestamp(int(data["e"]), UTC))
        except (ValueError, KeyError, TypeError) as err:
            raise InvalidViewerToken("this viewer link is not valid; ask for a new link") from err
        if grant.expires_at <= self.clock.now():
            raise InvalidViewerToken("this viewer link has expired; ask for a new link")
        if conversation_id is not None and grant.conversation_id != conversation_id:
            raise InvalidViewerToken("this viewer link is for another conversation")
        return grant
