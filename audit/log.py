"""Recording events in the caller's transaction and chaining them per org at commit.

`record` only queues an event on the session. Just before the session commits, the queued
events of each org are given their sequence numbers and hashes under a row lock on that org's
chain head, and are inserted with the change they describe. The head lock is therefore always
the last lock a transaction takes, and held only for the commit: seat locks on the org row come
first, so parallel writers never deadlock and never fork the chain. A rollback drops the queue.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, bindparam, event, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audit import clock, observers
from audit.actor import Actor
from audit.models import AuditEvent, AuditHead

GENESIS_HASH = "0" * 64
# The chain of the operators' own acts that belong to no org (gateway credentials made or revoked),
# kept in `org_id` where an org's chain has its id: org ids are UUIDs, so no org can have this one.
OPERATOR_STREAM = "operator"
PENDING = "audit.pending"
WRITTEN = "audit.written"  # chained and sent, announced once committed (audit.observers)
# Field names whose values are secrets; a change naming one is a bug in the caller.
SECRET_FIELDS = frozenset({"token", "secret", "password", "token_hash", "key_hash", "secret_hash", "client_secret"})


@dataclass(frozen=True)
class Target:
    """What an event is about."""

    type: str
    id: str
    display: str = ""


def record(
    session: Session,
    actor: Actor,
    action: str,
    target: Target,
    changes: dict[str, Any] | None = None,
    *,
    org_id: str,
    outcome: str = "success",
) -> None:
    """Queue one event; it is written in the same transaction as the change, or not at all."""
    session.info.setdefault(PENDING, []).append(event_item(actor, action, target, changes, org_id=org_id,
                                                           outcome=outcome))


def event_item(actor: Actor, action: str, target: Target, changes: dict[str, Any] | None = None, *,
               org_id: str, outcome: str = "success") -> dict[str, Any]:
    """One event as `record` queues it, not yet chained (plain data)."""
    # Through JSON once, so that the hash taken at commit matches what the database returns.
    changes = json.loads(json.dumps(changes or {}, default=str))
    leaked = SECRET_FIELDS.intersection(changes)
    if leaked:
        raise ValueError(f"secret fields in audit changes: {sorted(leaked)}")
    return {
        "id": str(uuid.uuid4()),
        "org_id": org_id,
        "occurred_at": clock.now(),
        "actor_type": actor.type,
        "actor_id": actor.id,
        "actor_display": actor.display,
        "action": str(action),  # an Action member is its value; the queue holds plain data
        "target_type": target.type,
        "target_id": target.id,
        "target_display": target.display,
        "changes": changes,
        "outcome": outcome,
        "request_id": actor.request_id,
        "ip": actor.ip,
        "user_agent": actor.user_agent,
        "client_request_id": actor.client_request_id,
    }


def pending_events(session: Session) -> list[dict[str, Any]]:
    """Return the events queued on this session and not yet committed."""
    return list(session.info.get(PENDING, []))


# Stored with an event but outside what its hash covers. `client_request_id` is what the client
# claimed (X-Request-Id), kept for correlation only; it came after events were first chained, and
# leaving it out keeps every earlier hash valid and exports unchanged. The server's `request_id`
# is covered.
UNHASHED = frozenset({"hash", "client_request_id"})


def canonical(fields: dict[str, Any]) -> bytes:
    """Return the canonical JSON that an event's hash covers (everything but UNHASHED)."""
    data = {key: value for key, value in fields.items() if key not in UNHASHED}
    when = data["occurred_at"]
    data["occurred_at"] = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(fields: dict[str, Any]) -> str:
    """Return the hex SHA-256 of an event's canonical form (which includes prev_hash)."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def open_chain(session: Session, org_id: str) -> None:
    """Create the chain head of a new org."""
    session.add(AuditHead(org_id=org_id, seq=0, hash=GENESIS_HASH, base_seq=0, base_hash=GENESIS_HASH))
    session.flush()


HEADS = cast(Table, AuditHead.__table__)
EVENTS = cast(Table, AuditEvent.__table__)
# Built once: plain statements with their parameters apart, so each commit only binds values.
LOCK_HEAD = select(HEADS.c.seq, HEADS.c.hash, HEADS.c.last_at).where(
    HEADS.c.org_id == bindparam("head_org_id")).with_for_update()
MOVE_HEAD = update(HEADS).where(HEADS.c.org_id == bindparam("head_org_id")).values(
    seq=bindparam("head_seq"), hash=bindparam("head_hash"), last_at=bindparam("head_last_at"))
INSERT_EVENTS = insert(EVENTS)
# The event's columns bound under names of their own (`event_seq`...), so that the head's UPDATE
# in the same statement takes no SET clause from them (both tables have org_id, seq and hash).
INSERT_EVENT = insert(EVENTS).values(
    {column.key: bindparam(f"event_{column.key}", type_=column.type) for column in EVENTS.columns})
INSERT_EVENT_MOVING_HEAD = INSERT_EVENT.add_cte(MOVE_HEAD.cte("moved_head"))
# Up to this many events, PostgreSQL gets each one with the head's move to it in one statement
# (psycopg sends a batch in one round trip); a larger batch moves the head once, on its own.
MOVE_WITH_EACH_EVENT = 16


@dataclass
class Head:
    """Where an org's chain stands: its last event's sequence number, hash and time."""

    seq: int
    hash: str
    last_at: Any


def _lock_head(session: Session, org_id: str) -> Head:
    """Lock the org's chain head until commit and return where it stands (plain columns, no ORM object)."""
    conn = session.connection()  # plain statements on the connection: no ORM execution around them
    row = conn.execute(LOCK_HEAD, {"head_org_id": org_id}).one_or_none()
    if row is None:  # a chain begun on its first event (the operators'): two writers may both find none
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        conn.execute(dialect.insert(HEADS).on_conflict_do_nothing(index_elements=["org_id"]), {
            "org_id": org_id, "seq": 0, "hash": GENESIS_HASH, "base_seq": 0, "base_hash": GENESIS_HASH})
        row = conn.execute(LOCK_HEAD, {"head_org_id": org_id}).one()
    return Head(row.seq, row.hash, row.last_at)


def hold_chain(session: Session, org_id: str) -> None:
    """Hold the org's chain until commit, for a writer that decides what to record from the chain's own
    events (identity.gateway.begin_chain: "has the operators' chain begun?"): a second such writer waits
    here and then reads the first one's events, where it would otherwise decide the same on its own and
    record it twice. Events are chained at commit under the same lock, which this transaction then holds."""
    _lock_head(session, org_id)


def chained(head: Head, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The queued `items` (of one org) as the rows that follow `head` in its chain, each with its
    sequence number, the hash before it and its own; `head` is moved past them. `head.last_at` must be
    known when the chain has events (a head written before it was kept: `_chain_pending` reads it)."""
    latest, rows = head.last_at, []
    for item in items:
        # Time never runs backwards along the chain (a writer that recorded earlier may commit
        # later), so that every time range is one contiguous run of sequence numbers.
        latest = item["occurred_at"] if latest is None else max(latest, item["occurred_at"])
        fields = {**item, "occurred_at": latest, "seq": head.seq + 1, "prev_hash": head.hash}
        fields["hash"] = event_hash(fields)
        rows.append(fields)
        head.seq, head.hash = fields["seq"], fields["hash"]
    head.last_at = latest
    return rows


def moving_head(org_id: str, row: dict[str, Any]) -> dict[str, Any]:
    """INSERT_EVENT_MOVING_HEAD's parameters for one chained event `row`: the event, and the head moved to it."""
    return {**{f"event_{key}": value for key, value in row.items()}, "head_org_id": org_id, "head_seq": row["seq"],
            "head_hash": row["hash"], "head_last_at": row["occurred_at"]}


def _append(session: Session, org_id: str, head: Head, rows: list[dict[str, Any]]) -> None:
    """Insert the chained events and move the locked head past them.

    On PostgreSQL each event carries the head's move to itself (an UPDATE in a data-modifying
    WITH), so that a transaction's audit costs two round trips, not three.
    """
    conn = session.connection()
    if conn.dialect.name == "postgresql" and len(rows) <= MOVE_WITH_EACH_EVENT:
        conn.execute(INSERT_EVENT_MOVING_HEAD, [moving_head(org_id, row) for row in rows])
        return
    conn.execute(MOVE_HEAD, {"head_org_id": org_id, "head_seq": head.seq, "head_hash": head.hash,
                             "head_last_at": head.last_at})
    conn.execute(INSERT_EVENTS, rows)


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    queued: list[dict[str, Any]] = session.info.pop(PENDING, [])
    if not queued:
        return
    session.flush()  # the changes first, so that a failing change never reaches the chain
    for org_id in sorted({item["org_id"] for item in queued}):  # one lock order for all
        head = _lock_head(session, org_id)
        if head.last_at is None and head.seq:  # a head written before last_at was kept
            head.last_at = session.scalar(select(AuditEvent.occurred_at).where(AuditEvent.org_id == org_id,
                                                                                AuditEvent.seq == head.seq))
        # Plain INSERTs, not ORM objects: events are written, never read back here.
        _append(session, org_id, head, chained(head, [i for i in queued if i["org_id"] == org_id]))
    session.info.setdefault(WRITTEN, []).extend(queued)


@event.listens_for(Session, "after_commit")
def _announce_written(session: Session) -> None:
    written: list[dict[str, Any]] = session.info.pop(WRITTEN, [])
    if written:
        observers.announce(written)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(PENDING, None)
    session.info.pop(WRITTEN, None)
