"""What the repositories raise for a rule the database enforced. ``core`` translates each into its own error
once, at its boundary; these pickle (the writer process sends them back as they are)."""

from __future__ import annotations


class StorageError(Exception):
    """Base of the repositories' own errors."""


class AccountMissing(StorageError):
    """The account a write names does not exist (``account_id``)."""

    def __init__(self, account_id: int) -> None:
        super().__init__(account_id)
        self.account_id = account_id

    def __str__(self) -> str:
        return f"account {self.account_id} does not exist"


class NotEnoughUnits(StorageError):
    """A hold found fewer active units than it needs: ``needed`` and ``available`` of ``unit``; nothing written."""

    def __init__(self, unit: str, needed: int, available: int) -> None:
        super().__init__(unit, needed, available)
        self.unit, self.needed, self.available = unit, needed, available

    def __str__(self) -> str:
        return f"not enough {self.unit}: needs {self.needed}, has {self.available}"


class DuplicateKey(StorageError):
    """A unique key (``what``) is taken already: an idempotency key, an identity, a code."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what
