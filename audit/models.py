"""Audit tables. They have no foreign keys: deleting anything never deletes events."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, MetaData, String, Text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and returned timezone-aware, identically on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


class AuditEvent(Base):
    """One audited change or sign-in; `hash` covers its canonical form and `prev_hash`."""

    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[dt.datetime]
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_display: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(64))
    target_display: Mapped[str] = mapped_column(String(320))
    changes: Mapped[dict[str, Any]]
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(Text)
    # The client's own X-Request-Id, beside the server's `request_id`; not covered by `hash`.
    client_request_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (
        Index("uq_audit_events_org_seq", "org_id", "seq", unique=True),
        Index("ix_audit_events_org_time", "org_id", "occurred_at"),
        # A page filtered to one action, actor or target is the newest n of that index's run (migration 0020).
        Index("ix_audit_events_org_action_seq", "org_id", "action", "seq"),
        Index("ix_audit_events_org_actor_seq", "org_id", "actor_id", "seq"),
        Index("ix_audit_events_org_target_seq", "org_id", "target_id", "seq"),
    )


class AuditHead(Base):
    """The newest link of an org's chain; its row lock serialises appends per org."""

    __tablename__ = "audit_heads"

    org_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))
    # Where the chain starts after a retention purge: the last purged event's seq and hash.
    base_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    base_hash: Mapped[str] = mapped_column(String(64))
    purged_count: Mapped[int] = mapped_column(Integer, default=0)
    # The newest event's time, so that appending needs no read of the events table.
    last_at: Mapped[dt.datetime | None]


class AuditPurgePermit(Base):
    """SQLite only: present inside a retention purge's transaction, the one time events may be deleted.

    SQLite's trigger refuses every UPDATE of an event, and every DELETE unless a permit for the
    event's org exists and the event is at or before the org's chain base. PostgreSQL's trigger
    no longer reads it (any role that writes the tables could insert one): there the purge sets a
    transaction-local setting instead (migration 0013a, audit.retention).
    """

    __tablename__ = "audit_purge_permits"

    org_id: Mapped[str] = mapped_column(String(36), primary_key=True)


class AuditCheckpoint(Base):
    """A signed statement that an org's chain had `hash` at `seq` at `signed_at`.

    The signature (Ed25519, the service's key) covers `audit.checkpoints.payload()`; an auditor who
    keeps a copy can later prove that history up to `seq` was not rewritten. `reason` says what made
    it: `manual`, `scheduled`, `export` or `purge` (a purge's checkpoint vouches for the new base).
    """

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    org_id: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[dt.datetime]
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(16))

    __table_args__ = (Index("ix_audit_checkpoints_org_seq", "org_id", "seq"),)
