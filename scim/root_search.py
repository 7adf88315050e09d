"""POST /.search at the service root: Users and Groups searched together (RFC 7644 section 3.4.3).

One query pages over both: each type's matching ids, with the value to sort by, UNION ALL,
sorted and paged in the database; then that page's users and groups are read and rendered in
its order. A filter naming an attribute one type lacks (`userName`, `members`) matches none of
that type, and sorting by such an attribute puts that type's resources last; a filter or sortBy
neither type understands is 400 `invalidFilter`. Without sortBy, users come before groups, each
in creation order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Select, false, func, literal, null, select, true, union_all
from sqlalchemy.orm import Session

from identity.models import IdpGroup, User
from scim import context, discovery, listing, resources
from scim.context import Result
from scim.errors import InvalidFilter
from scim.filter import GROUPS, USERS, Registry, filter_groups, filter_users, sort_key

_KINDS: tuple[tuple[Any, Registry, Callable[[str], ColumnElement[bool]]], ...] = (
    (User, USERS, filter_users), (IdpGroup, GROUPS, filter_groups))


def search_resources(params: dict[str, Any]) -> Result:
    """Search Users and Groups together, a page at a time, sorted across both."""
    query = listing.read_query(params)
    with context.reading() as session:
        total, page = _matching(session, context.org_id(), query)
        body = [query.project(resource) for resource in _render(session, page, query)]
    return 200, discovery.list_response(body, total, query.start), {}


def _either(build: Callable[[int], Any]) -> list[Any]:
    """Build per type (0 users, 1 groups); a type that cannot understand the request gets None,
    unless neither can, which is the client's error."""
    built: list[Any] = []
    errors: list[InvalidFilter] = []
    for kind in (0, 1):
        try:
            built.append(build(kind))
        except InvalidFilter as error:
            built.append(None)
            errors.append(error)
    if len(errors) == 2:
        raise errors[0]
    return built


def _sort_values(query: listing.Query) -> list[Any]:
    """Each type's value to sort by; a NULL of the other's type where one type lacks the attribute."""
    sort_by = query.sort_by
    if sort_by is None:
        return [null(), null()]
    keys = _either(lambda kind: sort_key(_KINDS[kind][1], sort_by))
    typed = next(key.type for key in keys if key is not None)
    return [literal(None, typed) if key is None else key for key in keys]


def _matching(session: Session, org_id: str, query: listing.Query) -> tuple[int, list[tuple[int, str]]]:
    """Return the total number of matches, and the page as (kind, id) pairs in order."""
    text = query.filter
    wheres = _either(lambda kind: _KINDS[kind][2](text)) if text else [true(), true()]
    sides: list[Select[Any]] = []
    for kind, ((model, _, _), where, value) in enumerate(zip(_KINDS, wheres, _sort_values(query), strict=True)):
        side = select(literal(kind).label("kind"), model.id.label("id"), value.label("sort_value"),
                      model.created_at.label("created_at")).where(model.org_id == org_id)
        side = side.where(false() if where is None else where)
        sides.append(side.where(User.deleted_at.is_(None)) if model is User else side)
    both = union_all(*sides).subquery()
    total = session.scalar(select(func.count()).select_from(both)) or 0
    order: list[Any] = []
    if query.sort_by:  # missing values last when ascending, first when descending
        missing, value = both.c.sort_value.is_(None), both.c.sort_value
        order += [missing.desc(), value.desc()] if query.descending else [missing.asc(), value.asc()]
    order += [both.c.kind, both.c.created_at, both.c.id]
    rows = session.execute(select(both.c.kind, both.c.id).order_by(*order)
                           .offset(query.start - 1).limit(query.count)).all()
    return total, [(row.kind, row.id) for row in rows]


def _render(session: Session, page: list[tuple[int, str]], query: listing.Query) -> list[dict[str, Any]]:
    """The page's users and groups as SCIM resources, in the page's order."""
    base = context.base_url()
    user_ids = [rid for kind, rid in page if kind == 0]
    group_ids = [rid for kind, rid in page if kind == 1]
    found: dict[str, dict[str, Any]] = {}
    if user_ids:
        shown = query.wants("groups") or query.wants("meta")  # meta.version counts the groups
        groups_of = listing.groups_of(session, user_ids) if shown else {}
        for user in session.scalars(select(User).where(User.id.in_(user_ids))):
            found[user.id] = resources.user_to_wire(user, base, groups_of.get(user.id))
    if group_ids:
        members = listing.members_of(session, group_ids) if query.wants("members") else {}
        for group in session.scalars(select(IdpGroup).where(IdpGroup.id.in_(group_ids))):
            found[group.id] = resources.group_to_wire(group, base, members.get(group.id))
    return [found[rid] for _, rid in page]
