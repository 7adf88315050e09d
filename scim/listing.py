"""List queries: filter, sort and page (RFC 7644 section 3.4.2) without loading more than a page."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Select, bindparam, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.util import ClauseAdapter

from identity.driver_reads import DriverRead
from identity.models import IdpGroup, IdpGroupMember, User
from scim import projection
from scim.discovery import DEFAULT_COUNT, MAX_RESULTS
from scim.errors import InvalidFilter, InvalidValue
from scim.filter import GROUPS, USERS, Registry, bounded, parse_filter, sort_key, to_sql


@dataclass(frozen=True)
class Query:
    """A list request's parameters, from the query string or a POST /.search body."""

    filter: str | None
    start: int
    count: int
    sort_by: str | None
    descending: bool
    attributes: list[str]
    excluded: list[str]

    def wants(self, attribute: str) -> bool:
        """Tell whether the response shows any of `attribute` (RFC 7644 section 3.4.2.5)."""
        return projection.wants(attribute, self.attributes, self.excluded)

    def wants_whole(self, attribute: str) -> bool:
        """Tell whether the response shows `attribute` with all its sub-attributes (`members`, not `members.value`)."""
        return self.wants(attribute) and projection.whole(attribute, self.attributes, self.excluded)

    def project(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Return `resource` as the client asked to see it (RFC 7644 sections 3.4.2.5 and 3.10)."""
        return projection.project(resource, self.attributes, self.excluded)


# An integer as RFC 7644 section 3.4.2.4 means it: ASCII digits (Python's int() also takes "１",
# " 1 ", "1_0", 1.5 and true), no more than fit the database's BIGINT OFFSET.
INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def _integer(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, str) and INTEGER.fullmatch(value):
        return int(value)
    if type(value) is int and abs(value) < 10**18:
        return value
    raise InvalidValue(f"{name} must be an integer, got {str(value)[:40]!r}")


def _names(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(item).strip() for item in items if str(item).strip()]


def read_query(params: Mapping[str, Any]) -> Query:
    """Read list parameters (names case-insensitive); startIndex < 1 is 1, count < 0 is 0."""
    lower = {str(k).lower(): v for k, v in params.items()}
    order = str(lower.get("sortorder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise InvalidValue("sortOrder must be ascending or descending")
    filter_text = lower.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise InvalidFilter("filter must be a string")
    return Query(
        filter=filter_text or None,
        start=max(1, _integer(lower.get("startindex"), "startIndex", 1)),
        count=min(max(0, _integer(lower.get("count"), "count", DEFAULT_COUNT)), MAX_RESULTS),
        sort_by=lower.get("sortby") or None,
        descending=order == "descending",
        attributes=_names(lower.get("attributes")),
        excluded=_names(lower.get("excludedattributes")),
    )


def _page(session: Session, base: Select[Any], page: Select[Any], query: Query) -> tuple[int, list[Any]]:
    if query.count == 0:
        return _count(session, base), []
    rows = list(_core(session).execute(page))
    if 0 < len(rows) < query.count or (not rows and query.start == 1):
        # A page that is not full is the last one: it tells the total without a count query.
        # This is the common case of `userName eq` lookups, which IdPs send before every change.
        return query.start - 1 + len(rows), rows
    return _count(session, base), rows


def _ordered(base: Select[Any], model: Any, registry: Registry, query: Query, lookup: bool) -> Select[Any]:
    """The page's statement: `base` in the query's order (then creation, id), at its offset."""
    order: list[Any] = []
    if query.sort_by:
        key = sort_key(registry, query.sort_by)
        # Resources without the value last ascending, first descending (RFC 7644 section 3.4.2.3):
        # PostgreSQL's own order, said for SQLite, which puts NULL first ascending.
        order.append(key.desc().nulls_first() if query.descending else key.asc().nulls_last())
    order += [model.created_at, model.id]  # a stable order for paging
    if lookup:
        base, order = _fenced(base, order)
    elif query.start > 1 and not query.filter and not query.sort_by:
        return _deferred(base, model, order, query)
    return base.order_by(*order).offset(query.start - 1).limit(query.count)


def _deferred(base: Select[Any], model: Any, order: list[Any], query: Query) -> Select[Any]:
    """A page deep in the list order: skip ids in the list-order index, then read the page's rows.

    OFFSET reads every row it skips; PostgreSQL fetches each from the table, so the page at
    990,000 read 990,000 rows (1.5 s at 1,000,000 users). Skipping in a select of ids alone lets
    it walk `ix_users_org_created` without the table (an index-only scan once vacuumed), and only
    the page's rows are fetched, by primary key.
    """
    ids = base.with_only_columns(model.id).order_by(*order).offset(query.start - 1).limit(query.count)
    return base.where(model.id.in_(ids.scalar_subquery())).order_by(*order)


def _fenced(base: Select[Any], order: list[Any]) -> tuple[Select[Any], list[Any]]:
    """Read a lookup's few rows first (a MATERIALIZED CTE), then order and page them.

    With ORDER BY and LIMIT on the same query, a planner may walk the org's list-order index
    (`ix_users_org_created`) and test every user against the filter, betting that 100 matches come
    soon: 347 ms at 1,000,000 users when it misjudged `userName eq`'s selectivity (docs/performance.md).
    Behind the fence the filter is planned alone, on its attribute's index, on SQLite as on
    PostgreSQL; the ORDER BY then sorts the handful of rows found.
    """
    found = base.cte("found").prefix_with("MATERIALIZED")
    adapter = ClauseAdapter(found)  # for a sortBy expression; a column is found by its name (much cheaper)
    return select(found), [found.c[item.key] if isinstance(item, Column) else adapter.traverse(item)
                           for item in order]


def _core(session: Session) -> Connection:
    """The session's connection, for pages read as plain rows.

    A page is rendered straight to JSON and never changed, so it is read with Core: rows whose
    attributes have the model's names (`row.user_name`), without the ORM's identity map and
    per-object bookkeeping, which cost more than the indexed lookup itself on the hot
    `userName eq` path.
    """
    return session.connection()


def _count(session: Session, base: Select[Any]) -> int:
    return _core(session).scalar(select(func.count()).select_from(base.subquery())) or 0


_users, _groups, _members = User.__table__, IdpGroup.__table__, IdpGroupMember.__table__
# Built once: building a statement costs more than running an indexed lookup.
_LIVE_USERS = select(_users).where(_users.c.org_id == bindparam("org_id"), _users.c.deleted_at.is_(None))
_ORG_GROUPS = select(_groups).where(_groups.c.org_id == bindparam("org_id"))
_GROUPS_JOINED = (select(_members.c.user_id, _groups.c.id, _groups.c.display_name)
                  .join_from(_members, _groups, _groups.c.id == _members.c.group_id).order_by(_groups.c.display_name))
_GROUPS_OF = _GROUPS_JOINED.where(_members.c.user_id.in_(bindparam("user_ids", expanding=True)))
_GROUPS_OF_ONE = DriverRead(_GROUPS_JOINED.where(_members.c.user_id == bindparam("user_id")))


def list_users(session: Session, org_id: str, query: Query) -> tuple[int, list[Any]]:
    """Return (totalResults, the page of users as rows with User's attributes); deleted users are gone."""
    base, lookup = _filtered(_LIVE_USERS.params(org_id=org_id), USERS, query)
    return _page(session, base, _ordered(base, _users.c, USERS, query, lookup), query)


def users_page(org_id: str, query: Query) -> Select[Any]:
    """The statement `list_users` reads a page with (raise InvalidFilter); for EXPLAIN in tests and benchmarks."""
    base, lookup = _filtered(_LIVE_USERS.params(org_id=org_id), USERS, query)
    return _ordered(base, _users.c, USERS, query, lookup)


def list_groups(session: Session, org_id: str, query: Query) -> tuple[int, list[Any]]:
    """Return (totalResults, the page of groups as rows with IdpGroup's attributes)."""
    base, lookup = _filtered(_ORG_GROUPS.params(org_id=org_id), GROUPS, query)
    return _page(session, base, _ordered(base, _groups.c, GROUPS, query, lookup), query)


def groups_page(org_id: str, query: Query) -> Select[Any]:
    """The statement `list_groups` reads a page with; for EXPLAIN in tests and benchmarks."""
    base, lookup = _filtered(_ORG_GROUPS.params(org_id=org_id), GROUPS, query)
    return _ordered(base, _groups.c, GROUPS, query, lookup)


def _filtered(stmt: Select[Any], registry: Registry, query: Query) -> tuple[Select[Any], bool]:
    """Add the query's filter (raise InvalidFilter); tell whether it is a lookup (scim.filter.bounded)."""
    if not query.filter:
        return stmt, False
    node = parse_filter(query.filter)
    return stmt.where(to_sql(node, registry)), bounded(node, registry)


def groups_of(session: Session, user_ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Return each user's groups as (id, displayName), for one page in one query."""
    found: dict[str, list[tuple[str, str]]] = {uid: [] for uid in user_ids}
    if len(user_ids) == 1:
        found[user_ids[0]] = [(group_id, name) for _, group_id, name in
                              _GROUPS_OF_ONE.rows(_core(session), user_id=user_ids[0])]
    elif user_ids:
        for user_id, group_id, name in _core(session).execute(_GROUPS_OF, {"user_ids": user_ids}):
            found[user_id].append((group_id, name))
    return found


# A membership with what a group's `members` shows of the user. Read with Core, row by row:
# through the ORM, a 100,000-member group's rows were all buffered at once (30 MB more at the
# peak, measured with tracemalloc).
_MEMBER_ROWS = select(_members.c.group_id, _users.c.id, _users.c.display_name, _users.c.user_name).join_from(
    _members, _users, _users.c.id == _members.c.user_id)


# One group's members, on the driver's cursor (identity.driver_reads): for a 100,000-member group
# 56 ms of CPU against 140 to 190 ms through SQLAlchemy's rows (docs/performance.md).
_GROUP_MEMBERS = DriverRead(select(_users.c.id, _users.c.display_name, _users.c.user_name).join_from(
    _members, _users, _users.c.id == _members.c.user_id).where(_members.c.group_id == bindparam("group_id")))


def _member(row: Any) -> tuple[str, str]:
    """(user id, display): the display name, else the userName."""
    return row.id, row.display_name or row.user_name


def iter_members(session: Session, group_id: str, batch: int = 1000) -> Iterator[list[tuple[str, str]]]:
    """Yield a group's members as (user id, display) in lists of `batch`, read as they are sent.

    In the order of the group's index (when they joined), not sorted: sorting would need them
    all at once, and an ORDER BY on the user id may lead a planner to walk every membership.
    """
    for chunk in _GROUP_MEMBERS.batches(_core(session), batch, group_id=group_id):
        yield [(user_id, display or name) for user_id, display, name in chunk]


def members_of(session: Session, group_ids: list[str]) -> dict[str, list[tuple[str, str | None]]]:
    """Return each group's members as (user id, display), for a page of groups in one query."""
    found: dict[str, list[tuple[str, str | None]]] = {gid: [] for gid in group_ids}
    if group_ids:
        for row in _core(session).execute(_MEMBER_ROWS.where(_members.c.group_id.in_(group_ids))):
            found[row.group_id].append(_member(row))
        for members in found.values():  # sorted here, for the reason iter_members gives
            members.sort()
    return found
