"""Sets of ids a session's transaction records about itself (the keys it ended, the members whose
sessions it ended, the grants it took, the groups it holds locked, the groups whose version it moved),
kept in `session.info` and forgotten when its outermost transaction ends."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

_NAMES: list[str] = []
Id = TypeVar("Id", bound=Hashable)


class TransactionSet(Generic[Id]):
    """One named set of ids per transaction: `add` during it, `of` to read it, `retain` to forget all
    but some (a savepoint rolled back to let go of what it took)."""

    def __init__(self, name: str) -> None:
        self.name = name
        _NAMES.append(name)

    def add(self, session: Session, ids: Iterable[Id]) -> None:
        session.info.setdefault(self.name, set()).update(ids)

    def of(self, session: Session) -> frozenset[Id]:
        return frozenset(session.info.get(self.name, ()))

    def holds(self, session: Session, one: Id) -> bool:
        """Whether `one` was recorded (`of` without copying the set)."""
        return one in session.info.get(self.name, ())

    def retain(self, session: Session, ids: Iterable[Id]) -> None:
        session.info.setdefault(self.name, set()).intersection_update(ids)


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction
        for name in _NAMES:
            session.info.pop(name, None)
