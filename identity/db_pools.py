"""The pools of one database, renewed together when any of them meets a connection the server ended.

A process on PostgreSQL holds several pools of one server (identity.db.Database: the main one, the
lookups' and the point reads' of the key check and the SCIM lookup). SQLAlchemy renews only the pool
that saw the disconnect (`Pool._invalidate`: every connection made before it is replaced at its next
checkout); after a restart or a failover the others still held connections as dead, and each door's
first request on one was a 503 of its own (tests/identity/test_database_restart.py). One restart ends
them all, so one disconnect renews them all. No ping on every checkout (`pool_pre_ping`): a round trip
per transaction on the hot paths (identity.db._ping_when_idle, docs/performance.md).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import Engine, event

# Each engine's family: the engines of its database (weakly held: a disposed Database goes away).
_FAMILIES: weakref.WeakKeyDictionary[Engine, list[weakref.ref[Engine]]] = weakref.WeakKeyDictionary()


def renewed_together(*engines: Engine) -> None:
    """Make `engines` (one database's) one family: a disconnect seen on any renews every pool
    (`renew_all`). SQLAlchemy's own executions report it through `handle_error`, a dialect event,
    which adds nothing to a statement that succeeds; the driver's cursor (identity.driver_reads) and
    the idle ping (identity.db) call `renew_all` themselves."""
    family = [weakref.ref(engine) for engine in dict.fromkeys(engines)]
    for engine in dict.fromkeys(engines):
        _FAMILIES[engine] = family
        event.listen(engine, "handle_error", _on_error)


def _on_error(context: Any) -> None:
    if context.is_disconnect and context.engine is not None:
        renew_all(context.engine)


def renew_all(engine: Engine) -> None:
    """Renew every pool of `engine`'s family (or `engine`'s own alone): each connection made before
    now is replaced at its next checkout, the ones checked out included, as SQLAlchemy does to the
    pool that saw a disconnect. `Pool._invalidate` is its own way; it has no public one (`dispose`
    would close the connections other threads are using)."""
    for ref in _FAMILIES.get(engine, [weakref.ref(engine)]):
        member = ref()
        if member is not None:
            member.pool._invalidate(None)  # type: ignore[arg-type]  # None: the whole pool, no one connection
