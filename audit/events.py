"""Selecting an org's events and the public shape of one event (docs/audit.md).

Events are read in chain order by keyset pagination on `seq`, a batch at a time, so that any
selection, a million events included, is read with constant memory. Event time never runs
backwards along an org's chain (audit.log), so a time bound is also a bound on `seq`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, String, Text, cast, func, or_, select, type_coerce
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from audit import clock
from audit.models import AuditEvent

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
BATCH = 2000
# The stored columns, in the order rows are read. `client_request_id` (outside the hash) is last, so
# that a CSV export keeps every earlier column where it was.
COLUMNS = ("id", "seq", "occurred_at", "org_id", "actor_type", "actor_id", "actor_display", "action",
           "target_type", "target_id", "target_display", "changes", "outcome", "request_id", "ip",
           "user_agent", "prev_hash", "hash", "client_request_id")
_SELECT = select(*(AuditEvent.__table__.c[name] for name in COLUMNS))


@dataclass(frozen=True)
class Selection:
    """Which events of one org: a time range [since, until) and optional filters.

    `actions` holds exact actions (`user.created`) or prefixes (`user.` or `user.*`), any of which
    may match. Only a selection without filters other than time is a contiguous piece of the chain.
    """

    org_id: str
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    actions: tuple[str, ...] = ()
    actor_id: str | None = None
    actor_type: str | None = None
    target_id: str | None = None
    target_type: str | None = None
    outcome: str | None = None
    after_seq: int = 0
    upto_seq: int | None = None  # none above it: a view of the log as it stood (the console's paging)

    @property
    def contiguous(self) -> bool:
        """Tell whether the selection is a run of consecutive events (only time bounds it)."""
        return not (self.actions or self.actor_id or self.actor_type or self.target_id or self.target_type
                    or self.outcome)

    def describe(self) -> dict[str, Any]:
        """Return the selection as plain data, for the audit event that records a read or export."""
        found = {"since": format_time(self.since) if self.since else None,
                 "until": format_time(self.until) if self.until else None,
                 "actions": list(self.actions) or None, "actor_id": self.actor_id, "actor_type": self.actor_type,
                 "target_id": self.target_id, "target_type": self.target_type, "outcome": self.outcome}
        return {key: value for key, value in found.items() if value is not None}


def format_time(moment: dt.datetime) -> str:
    """Return `moment` as the log writes times: UTC with microseconds and a `Z`."""
    return moment.astimezone(dt.UTC).strftime(TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """Return the aware UTC time of an ISO 8601 text (`Z` or an offset; a bare date is midnight UTC);
    ValueError for anything else, a time in UTC outside the calendar included."""
    value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first UTC time there is
        raise ValueError(f"{text.strip()[:40]!r} falls outside the years 1 to 9999 in UTC") from None


def _filters(selection: Selection) -> list[ColumnElement[bool]]:
    e = AuditEvent
    found: list[ColumnElement[bool]] = []
    if selection.actions:
        found.append(or_(*(e.action.startswith(a.rstrip("*"), autoescape=True) if a.endswith((".", "*"))
                           else e.action == a for a in selection.actions)))
    for column, value in ((e.actor_id, selection.actor_id), (e.actor_type, selection.actor_type),
                          (e.target_id, selection.target_id), (e.target_type, selection.target_type),
                          (e.outcome, selection.outcome)):
        if value is not None:
            found.append(column == value)
    return found


def seq_bounds(session: Session, selection: Selection) -> tuple[int, int]:
    """Return (after, last): the selection's events, as they stand now, have after < seq <= last
    (and none above `upto_seq`).

    Time bounds become `seq` bounds once, through the time index. Without `until` (or with one
    still in the future) `last` is the newest event now: events committed later get higher
    numbers, since appends are serialised per org, so reading on from `last` misses nothing.
    """
    e = AuditEvent
    org = e.org_id == selection.org_id
    after = selection.after_seq
    newest = session.scalar(select(func.max(e.seq)).where(org)) or 0
    if selection.since is not None:
        first = session.scalar(select(func.min(e.seq)).where(org, e.occurred_at >= selection.since))
        after = max(after, (newest + 1 if first is None else first) - 1)
    last = newest
    if selection.until is not None and selection.until <= clock.now():
        last = session.scalar(select(func.max(e.seq)).where(org, e.occurred_at < selection.until)) or 0
    if selection.upto_seq is not None:
        last = min(last, selection.upto_seq)
    return after, last


def _window(selection: Selection, after: int, upto: int, columns: Select[Any] = _SELECT) -> Select[Any]:
    """Select the events with after < seq <= upto: a bounded range of the `(org_id, seq)` index.

    Reading by bounded windows rather than `ORDER BY seq LIMIT n` keeps every query's cost to
    one window even when the planner has no statistics (a freshly loaded table on PostgreSQL
    otherwise sorts everything after the cursor, once per batch).
    """
    e = AuditEvent
    stmt = columns.where(e.org_id == selection.org_id, e.seq > after, e.seq <= upto, *_filters(selection))
    if selection.until is not None:
        stmt = stmt.where(e.occurred_at < selection.until)
    return stmt.order_by(e.seq)


def keyed(selection: Selection) -> bool:
    """Tell whether an index leads to exactly the selected events in `seq` order: a selection with a target,
    an actor or one exact action has its own index, (org_id, target_id | actor_id | action, seq)."""
    one_action = len(selection.actions) == 1 and not selection.actions[0].endswith((".", "*"))
    return selection.target_id is not None or selection.actor_id is not None or one_action


def _keyed_page(session: Session, selection: Selection, after: int, upto: int, limit: int, *,
                newest_first: bool) -> list[Row[Any]]:
    """Up to `limit` selected events with after < seq <= upto, in one statement along the selection's index.

    A filter that few events match would otherwise walk the whole chain in windows (one statement per
    BATCH sequence numbers) to fill a page; here the index range holds only matching events.
    """
    order = AuditEvent.seq.desc() if newest_first else AuditEvent.seq
    stmt = _window(selection, after, upto).order_by(None).order_by(order).limit(limit)
    return list(session.connection().execute(stmt).fetchall())


@dataclass(frozen=True)
class Page:
    """A page of events, the seq the next page starts after, whether a closed range is read to its end,
    and `last`, the newest seq the selection could hold when read (a bound that keeps later pages to
    the log as it stood: Selection.upto_seq)."""

    rows: list[Row[Any]]
    position: int
    ended: bool
    last: int = 0


def read_page(session: Session, selection: Selection, limit: int) -> Page:
    """Return up to `limit` selected events after `selection.after_seq` (and after `since`)."""
    after, last = seq_bounds(session, selection)
    closed = selection.until is not None and selection.until <= clock.now()
    if keyed(selection):
        page = _keyed_page(session, selection, after, last, limit, newest_first=False) if after < last else []
        position = max(int(page[-1].seq) if len(page) == limit else last, after)
        return Page(page, position, closed and position >= last, last)
    connection = session.connection()
    rows: list[Row[Any]] = []
    while after < last and len(rows) < limit:
        upto = min(after + max(limit, BATCH), last)
        found = connection.execute(_window(selection, after, upto)).fetchall()
        if len(rows) + len(found) >= limit:
            rows += found[:limit - len(rows)]
            after = int(rows[-1].seq)
        else:
            rows += found
            after = upto
    return Page(rows, after, closed and after >= last, last)


def read_page_newest(session: Session, selection: Selection, limit: int, before_seq: int | None = None) -> Page:
    """Return up to `limit` selected events newest first, all below `before_seq` when given.

    `position` is where the next page starts: its events are below it. `ended` when the selection
    is read down to its first event. Bounded windows of the `(org_id, seq)` index, as `read_page`, or
    one statement along the filter's own index when the selection is `keyed`.
    """
    after, last = seq_bounds(session, selection)
    upper = last if before_seq is None else min(last, before_seq - 1)
    if keyed(selection):
        page = _keyed_page(session, selection, after, upper, limit, newest_first=True) if upper > after else []
        position = int(page[-1].seq) if len(page) == limit else min(after, upper) + 1
        return Page(page, position, position - 1 <= after, last)
    connection = session.connection()
    rows: list[Row[Any]] = []
    position = upper + 1
    while upper > after and len(rows) < limit:
        lower = max(upper - max(limit, BATCH), after)
        found = connection.execute(_window(selection, lower, upper).order_by(None)
                                   .order_by(AuditEvent.seq.desc())).fetchall()
        if len(rows) + len(found) >= limit:
            rows += found[:limit - len(rows)]
            position = int(rows[-1].seq)
            break
        rows += found
        upper, position = lower, lower + 1
    return Page(rows, position, position - 1 <= after, last)


def iter_rows(session: Session, selection: Selection, batch: int = BATCH) -> Iterator[Row[Any]]:
    """Yield the selected events in chain order, one window of `batch` sequence numbers at a time."""
    yield from _batches(session, selection, _SELECT, batch)


def _batches(session: Session, selection: Selection, columns: Select[Any], batch: int) -> Iterator[Row[Any]]:
    after, last = seq_bounds(session, selection)
    connection = session.connection()
    while after < last:
        upto = min(after + batch, last)
        yield from connection.execute(_window(selection, after, upto, columns)).fetchall()
        after = upto


def _export_select(dialect: str) -> Select[Any]:
    """Return the columns of an export row: the time already formatted and `changes` as stored JSON text.

    Exporting is the one hot loop: the database formats the time and hands over the JSON text it
    keeps, so that no value is parsed only to be printed again.
    """
    c = AuditEvent.__table__.c
    when: ColumnElement[Any]
    if dialect == "postgresql":
        when = func.to_char(c.occurred_at, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
    else:  # SQLAlchemy keeps SQLite times as 'YYYY-MM-DD HH:MM:SS.ffffff'
        when = func.replace(type_coerce(c.occurred_at, String), " ", "T") + "Z"
    columns: list[Any] = [c[name] for name in COLUMNS]
    columns[COLUMNS.index("occurred_at")] = type_coerce(when, String).label("occurred_at")
    columns[COLUMNS.index("changes")] = cast(c.changes, Text).label("changes")
    return select(*columns)


def iter_export_rows(session: Session, selection: Selection, batch: int = BATCH) -> Iterator[Row[Any]]:
    """Yield the selected events as export rows (COLUMNS order; time and changes as text), in chain order."""
    yield from _batches(session, selection, _export_select(session.get_bind().dialect.name), batch)


def count(session: Session, selection: Selection, *, at_most: int | None = None) -> int:
    """Return how many events the selection holds now, or `at_most` once it holds that many (a
    page's "N newer events" need not count a log that grew by a million since it was opened)."""
    after, last = seq_bounds(session, selection)
    if at_most is None:
        stmt = _window(selection, after, last, select(func.count()).select_from(AuditEvent)).order_by(None)
        return session.scalar(stmt) or 0
    some = _window(selection, after, last, select(AuditEvent.seq)).order_by(None).limit(at_most).subquery()
    return session.scalar(select(func.count()).select_from(some)) or 0


def document(row: Row[Any] | AuditEvent) -> dict[str, Any]:
    """Return the public shape of one event (docs/audit.md), as exported and served."""
    return {
        "id": row.id, "seq": row.seq, "time": row.occurred_at.strftime(TIME_FORMAT), "org_id": row.org_id,
        "actor": {"type": row.actor_type, "id": row.actor_id, "display": row.actor_display},
        "action": row.action,
        "target": {"type": row.target_type, "id": row.target_id, "display": row.target_display},
        "changes": row.changes, "outcome": row.outcome, "request_id": row.request_id,
        "client_request_id": row.client_request_id, "source_ip": row.ip, "user_agent": row.user_agent,
        "prev_hash": row.prev_hash, "hash": row.hash,
    }


def hashed_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """Return the stored fields of an event in its public shape: what `audit.log.canonical` covers.

    `client_request_id` is not among them (audit.log.UNHASHED): an export written before it was
    shown verifies as well as one that shows it.
    """
    actor, target = doc["actor"], doc["target"]
    return {
        "id": doc["id"], "org_id": doc["org_id"], "occurred_at": doc["time"], "actor_type": actor["type"],
        "actor_id": actor["id"], "actor_display": actor["display"], "action": doc["action"],
        "target_type": target["type"], "target_id": target["id"], "target_display": target["display"],
        "changes": doc["changes"], "outcome": doc["outcome"], "request_id": doc["request_id"],
        "ip": doc["source_ip"], "user_agent": doc["user_agent"], "seq": doc["seq"],
        "prev_hash": doc["prev_hash"], "hash": doc["hash"],
    }


def row_fields(row: Row[Any]) -> dict[str, Any]:
    """Return the stored fields of an event row, as `audit.log.canonical` takes them."""
    return dict(row._mapping)
