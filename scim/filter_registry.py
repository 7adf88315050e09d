"""Where each SCIM attribute lives in the database, per resource type (`USERS`, `GROUPS`).

Keys are lowercase (`name.givenname`, `urn:...:enterprise:2.0:user:department`): known columns
are compared as columns (so the userName key and `external_id` indexes apply), multi-valued
attributes held as rows of another table are `Relation`s, and everything else is a JSON path
into the `attributes` column that works the same on SQLite and PostgreSQL (scim.sqljson).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, ColumnElement, Select, SQLColumnExpression, String, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

from identity.models import IdpGroup, IdpGroupMember, User, UserEmail
from scim.errors import InvalidFilter
from scim.filter_compare import Operand
from scim.schema import GROUP, USER, Attribute, ResourceSchema
from scim.syntax import AttrPath


@dataclass(frozen=True)
class Relation:
    """A multi-valued attribute held as rows of another table (Group.members, User.groups)."""

    link: Callable[[], Select[Any]]  # the correlated select of the rows, before the value filter
    subs: Callable[[], dict[str, SQLColumnExpression[Any]]]  # sub-attribute -> column of those rows
    # When set, the owner's id, and `link` selects the owning ids uncorrelated: the filter is
    # `owner id IN (matching rows)`, so the database can start from the rows' index rather than
    # test every owner with a correlated EXISTS.
    owner: Callable[[], ColumnElement[Any]] | None = None


@dataclass(frozen=True)
class Registry:
    """How one resource type's attributes map onto the database (keys lowercase, `name.sub`)."""

    schema: ResourceSchema
    document: SQLColumnExpression[Any]  # the JSON column holding every attribute not in a column
    columns: dict[str, SQLColumnExpression[Any]]
    relations: dict[str, Relation] = field(default_factory=dict)
    stand_ins: dict[str, dict[str, SQLColumnExpression[Any]]] = field(default_factory=dict)
    stored_as_key: frozenset[str] = frozenset()
    stored_stripped: frozenset[str] = frozenset()  # the domain strips these (identity.users, identity.groups)
    # What an IdP looks a resource up by: `eq` on one of these names a handful of resources at
    # most, whatever the org's size (scim.filter.bounded).
    identifying: frozenset[str] = frozenset()

    def resolve(self, path: AttrPath) -> tuple[Attribute, str]:
        """Return the attribute definition and its registry key (`name`, or `urn:name` for extensions)."""
        urn = None
        if path.uri is not None:
            urn = self.schema.urn(path.uri)
            if urn is None:
                raise InvalidFilter(f"unknown schema {path.uri!r}")
            attr = self.schema.attribute(urn, path.name)
        else:
            attr = self.schema.attribute(None, path.name)
            if attr is None:  # an extension attribute written without its URN, when unambiguous
                found = [(u, a) for u in self.schema.extensions if (a := self.schema.attribute(u, path.name))]
                urn, attr = found[0] if len(found) == 1 else (None, None)
        if attr is None:
            raise InvalidFilter(f"unknown attribute {str(path)!r}")
        if attr.mutability == "writeOnly":
            raise InvalidFilter(f"{attr.name} cannot be filtered on")
        key = attr.name.lower() if urn in (None, self.schema.core_urn) else f"{urn.lower()}:{attr.name.lower()}"
        return attr, key

    def json_keys(self, attr: Attribute, key: str) -> tuple[str, ...]:
        """Return the keys of an attribute in the JSON document: its extension's URN, then its name."""
        urn = self.schema.urn(key.rsplit(":", 1)[0]) if ":" in key else None
        return (urn, attr.name) if urn else (attr.name,)

    def leaf(self, attr: Attribute, key: str, sub: Attribute | None = None) -> Operand:
        """Return where a singular attribute (or a complex one's sub-attribute) is stored."""
        target = attr if sub is None else sub
        full = key if sub is None else f"{key}.{sub.name.lower()}"
        if full in self.columns:
            return Operand(target, column=self.columns[full], keyed=full in self.stored_as_key,
                           stripped=full in self.stored_stripped)
        if key == "meta":
            raise InvalidFilter(f"meta.{target.name} cannot be filtered on")
        keys = self.json_keys(attr, key) + ((sub.name,) if sub else ())
        return Operand(target, doc=self.document, keys=keys)


class owned_by(ColumnElement[bool]):  # noqa: N801 - a SQL construct
    """`owner IN (rows)`; on PostgreSQL `owner = ANY(ARRAY(rows))`, read first, then probed by key.

    Given IN, PostgreSQL may join the other way: scan every user of the org and probe the rows,
    which it does when it believes an email matches a few percent of users
    (tests/scim/test_lookup_plans.py). ARRAY(...) is computed once before the scan, so the owners
    are fetched by their primary key.
    """

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [("owner", InternalTraversal.dp_clauseelement),
                           ("rows", InternalTraversal.dp_clauseelement)]

    def __init__(self, owner: ColumnElement[Any], rows: Select[Any]) -> None:
        self.owner, self.rows = owner, rows


@compiles(owned_by)
def _owned_by(element: owned_by, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.owner.in_(element.rows), **kw)


@compiles(owned_by, "postgresql")
def _owned_by_pg(element: owned_by, compiler: SQLCompiler, **kw: Any) -> str:
    owner, rows = compiler.process(element.owner, **kw), compiler.process(element.rows.scalar_subquery(), **kw)
    return f"{owner} = ANY(ARRAY{rows})"


def sub_of(attr: Attribute, name: str) -> Attribute:
    """Return a sub-attribute's definition, or raise InvalidFilter."""
    sub = attr.sub(name)
    if sub is None:
        raise InvalidFilter(f"unknown attribute {attr.name}.{name}")
    return sub


def _groups_of_user() -> Relation:
    return Relation(
        link=lambda: select(IdpGroupMember.group_id).join(IdpGroup, IdpGroup.id == IdpGroupMember.group_id)
        .where(IdpGroupMember.user_id == User.id),
        subs=lambda: {"value": IdpGroupMember.group_id, "display": IdpGroup.display_name},
    )


def _members_of_group() -> Relation:
    member = aliased(User)
    return Relation(
        link=lambda: select(IdpGroupMember.user_id).join(member, member.id == IdpGroupMember.user_id)
        .where(IdpGroupMember.group_id == IdpGroup.id),
        # `display` as the group shows it (scim.listing._member): the displayName, else the userName.
        subs=lambda: {"value": IdpGroupMember.user_id,
                      "display": func.coalesce(func.nullif(member.display_name, ""), member.user_name),
                      "type": literal("User", String())},
    )


def _emails_of_user() -> Relation:
    return Relation(
        link=lambda: select(UserEmail.user_id),
        subs=lambda: {"value": UserEmail.value, "type": UserEmail.type, "primary": UserEmail.primary,
                      "display": UserEmail.display},
        owner=lambda: User.__table__.c.id,
    )


USERS = Registry(
    schema=USER, document=User.attributes,
    columns={
        "id": User.id, "externalid": User.external_id, "username": User.user_name_key,
        "displayname": User.display_name, "name.givenname": User.given_name, "name.familyname": User.family_name,
        "active": User.active, "meta.created": User.created_at, "meta.lastmodified": User.updated_at,
        "meta.resourcetype": literal("User", String()),
    },
    # `emails` are rows of user_emails (identity.emails), kept as keys, with an index on value.
    relations={"groups": _groups_of_user(), "emails": _emails_of_user()},
    # `email` is the primary email: it stands in for the emails array when sorting.
    stand_ins={"emails": {"value": User.email, "primary": literal(True, Boolean())}},
    stored_as_key=frozenset({"username", "groups.value", "emails.value"}),
    stored_stripped=frozenset({"username"}),
    identifying=frozenset({"id", "username", "externalid", "emails.value"}),
)

GROUPS = Registry(
    schema=GROUP, document=IdpGroup.attributes,
    columns={
        "id": IdpGroup.id, "externalid": IdpGroup.external_id, "displayname": IdpGroup.display_name_key,
        "meta.created": IdpGroup.created_at, "meta.lastmodified": IdpGroup.updated_at,
        "meta.resourcetype": literal("Group", String()),
    },
    relations={"members": _members_of_group()},
    # A group's displayName is unique as its key (identity.names; what SAML claims and rules match by).
    stored_as_key=frozenset({"members.value", "displayname"}),
    stored_stripped=frozenset({"displayname"}),
    identifying=frozenset({"id", "externalid", "displayname"}),
)
