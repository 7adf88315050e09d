"""The IdPs' lookups, each read by one statement made once (issue 19, the lookup beside scim2-server).

Okta sends `userName eq "..."` before every create and on every sync, Entra `externalId eq "..."`,
others the work email; for groups, `displayName eq "..."` (Entra with `excludedAttributes=members`)
or `externalId eq`. On the general path (scim.syntax's parser, scim.filter's translation,
scim.listing's fence, SQLAlchemy's execution) making and running the statement cost the worker
more CPU than PostgreSQL spent finding the row (docs/performance.md, "The lookup's own CPU").
Here each of those forms is one statement, made once per process by that same general path from a
placeholder value, with the value turned into a parameter, and read on the driver's cursor
(identity.driver_reads).

What keeps it the general path's answer: the SQL is the general path's own (one bind swapped for a
parameter); the value is compared as the general path compares it (as its key where the attribute
is stored as one, lowercased where it is not caseExact, else as sent); a text is taken only when
it is exactly one of these forms (ASCII names, spaces or tabs, one JSON string the lexer takes,
within the parser's length), anything else goes the general way; and tests hold rows, SQL and
refusals equal to the general path's for any value on both databases (tests/scim/test_idp_lookups.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, ColumnElement, Connection, Integer, Select, bindparam, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.visitors import replacement_traverse

from identity.driver_reads import DriverRead
from identity.models import IdpGroup, IdpGroupMember
from identity.names import name_key
from scim.listing import Query, groups_page, users_page
from scim.syntax import MAX_FILTER_LENGTH, REFUSED_CHARACTERS


def _forms(attributes: str) -> re.Pattern[str]:
    """The forms: names in any case (the registry's are case-insensitive), `eq` in any case (as the
    lexer takes it), spaces and tabs where the lexer ignores them, one JSON string."""
    return re.compile(rf'[ \t]*(?P<attr>{attributes})[ \t]+eq[ \t]+(?P<value>"(?:[^"\\]|\\.)*")[ \t]*',
                      re.IGNORECASE | re.ASCII)


@dataclass(frozen=True)
class Kind:
    """One resource type's lookups: their forms, the general path's page statement, and how each
    form's value is compared (scim.filter_compare: as its key where the attribute is stored as one,
    lowercased where it is not caseExact, else as sent)."""

    forms: re.Pattern[str]
    page: Callable[[str, Query], Select[Any]]
    compared: Callable[[str], Callable[[str], str] | None]
    made: dict[str, DriverRead] = field(default_factory=dict)


_AS_SENT = frozenset({"externalid", "id"})  # caseExact (RFC 7643 section 3.1)


def _stripped_key(value: str) -> str:  # userName, a group's displayName: stored stripped, compared as its key
    return name_key(value.strip())


USERS = Kind(_forms(r'userName|externalId|id|emails|emails\.value'
                    r'|emails\[type[ \t]+eq[ \t]+"(?:work|home|other)"\]\.value'),
             users_page, lambda form: None if form in _AS_SENT else _stripped_key if form == "username" else name_key)
GROUPS = Kind(_forms(r'displayName|externalId|id'), groups_page,
              lambda form: None if form in _AS_SENT else _stripped_key)
PLACEHOLDER = "lookupvalue"  # lowercase ASCII: its own key and its own lowercase, bound as written


def lookup_statement(kind: Kind, form: str) -> Select[Any]:
    """The general path's page statement for `<form> eq "<value>"`, with the value, the org, the
    offset and the count as parameters (`value`, `org_id`, `offset`, `count`)."""
    query = Query(filter=f'{form} eq "{PLACEHOLDER}"', start=1, count=1, sort_by=None, descending=False,
                  attributes=[], excluded=[])
    # BIGINT: startIndex goes up to 10**18 (scim.listing.INTEGER), as the general path's OFFSET does.
    page = kind.page("", query).limit(bindparam("count", type_=Integer)).offset(bindparam("offset", type_=BigInteger))
    swapped: list[BindParameter[Any]] = []

    def swap(element: Any, **_: Any) -> Any:
        if isinstance(element, BindParameter) and element.value == PLACEHOLDER:
            swapped.append(bindparam("value", type_=element.type))
            return swapped[-1]
        return None

    statement = cast("Select[Any]", replacement_traverse(page, {}, swap))
    assert len(swapped) == 1, f"{form}: the placeholder was bound {len(swapped)} times"
    return statement


def _form(kind: Kind, text: str) -> tuple[str, str] | None:
    """(the form, lowercase; the value as the lexer reads it), or None for anything else."""
    if len(text) > MAX_FILTER_LENGTH or (found := kind.forms.fullmatch(text)) is None:
        return None
    try:
        value = json.loads(found["value"])
    except ValueError:  # a bad escape: the general path words the refusal
        return None
    if REFUSED_CHARACTERS.search(value):  # the lexer refuses them: the general path words it
        return None
    return re.sub(r"[ \t]+", " ", found["attr"].lower()), value


def is_lookup(kind: Kind, text: str | None) -> bool:
    """Tell whether a filter is one of the kind's lookups, which `find` reads (scim.web also reads a
    user lookup on the pool whose plans PostgreSQL may reuse: identity.db.Database.looking_up)."""
    return text is not None and _form(kind, text) is not None


def find(kind: Kind, session: Session, org_id: str, query: Query) -> tuple[int, list[Any]] | None:
    """(totalResults, the page's rows) when `query` is one of the IdPs' lookups whose page tells
    its total; None when the general path (scim.listing.list_users or list_groups) must answer."""
    return _found(kind, False, session.connection(), org_id, query)


def find_users_with_groups(conn: Connection, org_id: str, query: Query) -> tuple[int, list[Any]] | None:
    """`find` of users, each row with its groups as `groups_of` reads them (`row.groups_of`:
    [(id, displayName)] by displayName), in one statement, so in one snapshot without a transaction
    around it: what scim.lookup_front answers with."""
    return _found(USERS, True, conn, org_id, query)


def _read(kind: Kind, form: str, with_groups: bool = False) -> DriverRead:
    """The form's statement (with each user's groups as a last column), made on first use."""
    made = _WITH_GROUPS if with_groups else kind.made
    if form not in made:
        statement = lookup_statement(kind, form)
        if with_groups:
            statement = statement.add_columns(_GroupsOf(statement.selected_columns.id).label("groups_of"))
        made[form] = DriverRead(statement)
    return made[form]


def _found(kind: Kind, with_groups: bool, conn: Connection, org_id: str,
           query: Query) -> tuple[int, list[Any]] | None:
    if query.filter is None or query.sort_by or query.count == 0 or (found := _form(kind, query.filter)) is None:
        return None
    form, value = found
    compared = kind.compared(form)
    rows = _read(kind, form, with_groups).rows(conn, org_id=org_id, offset=query.start - 1, count=query.count,
                                               value=value if compared is None else compared(value))
    if 0 < len(rows) < query.count or (not rows and query.start == 1):
        return query.start - 1 + len(rows), rows
    return None  # a full page, or past the end: the general path counts


_WITH_GROUPS: dict[str, DriverRead] = {}
_members, _groups = IdpGroupMember.__table__, IdpGroup.__table__


class _GroupsOf(ColumnElement[Any]):
    """A user's groups as a JSON array of [id, displayName] ordered by displayName, the order of
    scim.listing.groups_of: a correlated subquery, written for each database's JSON aggregate."""

    type = JSON()
    inherit_cache = True

    def __init__(self, user_id: ColumnElement[Any]) -> None:
        self.user_id = user_id


@compiles(_GroupsOf, "postgresql")
def _groups_of_postgresql(element: _GroupsOf, compiler: Any, **kw: Any) -> str:
    pairs = func.json_agg(aggregate_order_by(func.json_build_array(_groups.c.id, _groups.c.display_name),
                                             _groups.c.display_name))
    return str(compiler.process(select(pairs).join_from(_members, _groups, _groups.c.id == _members.c.group_id)
                                .where(_members.c.user_id == element.user_id).scalar_subquery(), **kw))


@compiles(_GroupsOf, "sqlite")
def _groups_of_sqlite(element: _GroupsOf, compiler: Any, **kw: Any) -> str:
    # SQLite 3.40 has no ORDER BY inside an aggregate: it aggregates an ordered subquery's rows in order.
    ordered = (select(_groups.c.id, _groups.c.display_name)
               .join_from(_members, _groups, _groups.c.id == _members.c.group_id)
               .where(_members.c.user_id == element.user_id).order_by(_groups.c.display_name)
               .correlate_except(_members, _groups).subquery())
    pairs = func.json_group_array(func.json_array(ordered.c.id, ordered.c.display_name))
    return str(compiler.process(select(pairs).scalar_subquery(), **kw))
