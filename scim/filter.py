"""SCIM filters (RFC 7644 section 3.4.2.2) parsed and translated into SQLAlchemy expressions.

Parsing is scim.syntax (scim2-filter-parser's lexer, corrected, and a recursive-descent parser);
the library's SQL transpiler is not used at all (FINDINGS.md lists its bugs).

Translation goes through an attribute registry per resource type (`USERS`, `GROUPS`), keyed
case-insensitively: known columns are compared as columns (so the userName key and
`external_id` indexes apply), everything else through JSON paths into the `attributes` column
that work the same on SQLite and PostgreSQL (scim.sqljson). Anything this module does not
understand raises `InvalidFilter`, never a silent match-all.

userName and email values are stored as their key (identity.names.name_key: NFC, case-folded,
computed in Python): a filter compares the key of its value with the stored key, never the
database's own `lower()`, so that `userName eq "STRASSE"` finds `straße` on every database.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, Select, SQLColumnExpression, String, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from identity.models import IdpGroup, IdpGroupMember, User, UserEmail
from identity.names import name_key
from scim.errors import InvalidFilter
from scim.schema import GROUP, USER, Attribute, ResourceSchema
from scim.sqljson import json_elements, json_number, json_present, json_repr, json_text, text_position
from scim.syntax import (
    AttrPath,
    Compare,
    Filter,
    Logical,
    Not,
    PatchPath,
    ValuePath,
    parse_datetime,
    parse_filter,
    parse_path,
)

__all__ = [
    "USERS", "GROUPS", "Registry", "filter_users", "filter_groups", "to_sql", "sort_key",
    # re-exported from scim.syntax
    "AttrPath", "Compare", "Filter", "Logical", "Not", "PatchPath", "ValuePath", "parse_filter", "parse_path",
]

# -- translation into SQL -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Operand:
    """Where one attribute's value lives: a SQL expression, or a path in a JSON document."""

    attr: Attribute
    column: SQLColumnExpression[Any] | None = None
    doc: SQLColumnExpression[Any] | None = None
    keys: tuple[str | int, ...] = ()
    # Stored as its key (identity.names.name_key; ids we generate are lowercase, their own key):
    # compare the key of the value with the column as it is.
    keyed: bool = False

    def text(self) -> SQLColumnExpression[Any]:
        return self.column if self.column is not None else json_text(self.json, *self.keys)

    @property
    def json(self) -> SQLColumnExpression[Any]:
        assert self.doc is not None, "a column operand has no JSON document"
        return self.doc


@dataclass(frozen=True)
class _Relation:
    """A multi-valued attribute held as rows of another table (Group.members, User.groups)."""

    link: Callable[[], Select[Any]]  # the correlated select of the rows, before the value filter
    subs: Callable[[], dict[str, SQLColumnExpression[Any]]]  # sub-attribute -> column of those rows
    # When set, the owner's id, and `link` selects the owning ids uncorrelated: the filter is
    # `owner id IN (matching rows)`, so the database can start from the rows' index rather than
    # test every owner with a correlated EXISTS.
    owner: Callable[[], SQLColumnExpression[Any]] | None = None


@dataclass(frozen=True)
class Registry:
    """How one resource type's attributes map onto the database (keys lowercase, `name.sub`)."""

    schema: ResourceSchema
    document: SQLColumnExpression[Any]  # the JSON column holding every attribute not in a column
    columns: dict[str, SQLColumnExpression[Any]]
    relations: dict[str, _Relation] = field(default_factory=dict)
    stand_ins: dict[str, dict[str, SQLColumnExpression[Any]]] = field(default_factory=dict)
    stored_as_key: frozenset[str] = frozenset()


def _groups_of_user() -> _Relation:
    return _Relation(
        link=lambda: select(IdpGroupMember.group_id).join(IdpGroup, IdpGroup.id == IdpGroupMember.group_id)
        .where(IdpGroupMember.user_id == User.id),
        subs=lambda: {"value": IdpGroupMember.group_id, "display": IdpGroup.display_name},
    )


def _members_of_group() -> _Relation:
    member = aliased(User)
    return _Relation(
        link=lambda: select(IdpGroupMember.user_id).join(member, member.id == IdpGroupMember.user_id)
        .where(IdpGroupMember.group_id == IdpGroup.id),
        subs=lambda: {"value": IdpGroupMember.user_id, "display": member.display_name,
                      "type": literal("User", String())},
    )


def _emails_of_user() -> _Relation:
    return _Relation(
        link=lambda: select(UserEmail.user_id),
        subs=lambda: {"value": UserEmail.value, "type": UserEmail.type, "primary": UserEmail.primary,
                      "display": UserEmail.display},
        owner=lambda: User.id,
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
)

GROUPS = Registry(
    schema=GROUP, document=IdpGroup.attributes,
    columns={
        "id": IdpGroup.id, "externalid": IdpGroup.external_id, "displayname": IdpGroup.display_name,
        "meta.created": IdpGroup.created_at, "meta.lastmodified": IdpGroup.updated_at,
        "meta.resourcetype": literal("Group", String()),
    },
    relations={"members": _members_of_group()},
    stored_as_key=frozenset({"members.value"}),
)


def filter_users(text: str) -> ColumnElement[bool]:
    """Return the WHERE expression over `User` for a SCIM filter; raise InvalidFilter."""
    return to_sql(parse_filter(text), USERS)


def filter_groups(text: str) -> ColumnElement[bool]:
    """Return the WHERE expression over `IdpGroup` for a SCIM filter; raise InvalidFilter."""
    return to_sql(parse_filter(text), GROUPS)


def to_sql(node: Filter, registry: Registry) -> ColumnElement[bool]:
    """Translate a parsed filter into a boolean expression over the registry's model."""
    return _Translator(registry).node(node, None)


def sort_key(registry: Registry, sort_by: str) -> SQLColumnExpression[Any]:
    """Return the expression to ORDER BY for `sortBy` (RFC 7644 section 3.4.2.3); raise InvalidFilter.

    Strings that are not caseExact sort case-insensitively; a multi-valued attribute sorts by its
    first value (`emails` by the primary email column). Callers add a unique tie-breaker (id).
    """
    path = parse_path(sort_by)
    translator = _Translator(registry)
    attr, key = translator.resolve(path.attr)
    sub = None if path.sub_attr is None else _sub(attr, path.sub_attr)
    complex_alone = attr.type == "complex" and not attr.multi_valued and sub is None  # `name`, `meta`
    related = key in registry.relations and key not in registry.stand_ins  # `emails` sorts by its column
    if path.value_filter is not None or related or complex_alone:
        raise InvalidFilter(f"cannot sort by {sort_by!r}")
    if attr.multi_valued:
        sub = sub or _sub(attr, "value")
        stand_in = registry.stand_ins.get(key, {}).get(sub.name.lower())
        operand = _Operand(sub, column=stand_in) if stand_in is not None else \
            _Operand(sub, doc=registry.document, keys=(*translator.json_keys(attr, key), 0, sub.name))
    else:
        operand = translator.leaf(attr, key, sub)
    expr = operand.column
    if expr is None:
        by_type = {"integer": json_number, "decimal": json_number, "boolean": json_repr}
        expr = by_type.get(operand.attr.type, json_text)(operand.json, *operand.keys)
    if operand.attr.type in ("string", "reference") and not operand.attr.case_exact and not operand.keyed:
        expr = func.lower(expr)
    return expr


class _Translator:
    """Builds the expression for one filter; `scope` is the multi-valued attribute being filtered."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.schema = registry.schema

    def node(self, node: Filter, scope: Callable[[str], _Operand] | None) -> ColumnElement[bool]:
        if isinstance(node, Logical):
            parts = (self.node(node.left, scope), self.node(node.right, scope))
            return and_(*parts) if node.op == "and" else or_(*parts)
        if isinstance(node, Not):
            # SQL NOT of NULL is NULL; a SCIM filter is two-valued: a missing value does not match.
            return not_(func.coalesce(self.node(node.operand, scope), false()))
        if isinstance(node, ValuePath):
            if scope is not None:
                raise InvalidFilter("a value filter cannot contain another value filter")
            return self.value_path(node.path, node.filter)
        if scope is not None:
            if node.path.uri or node.path.sub_attr:
                raise InvalidFilter(f"{node.path} is not a sub-attribute name")
            return _compare(scope(node.path.name), node.op, node.value)
        return self.compare(node)

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
        urn = self.schema.urn(key.rsplit(":", 1)[0]) if ":" in key else None
        return (urn, attr.name) if urn else (attr.name,)

    def leaf(self, attr: Attribute, key: str, sub: Attribute | None = None) -> _Operand:
        """Return where a singular attribute (or a complex one's sub-attribute) is stored."""
        target = attr if sub is None else sub
        full = key if sub is None else f"{key}.{sub.name.lower()}"
        if full in self.registry.columns:
            return _Operand(target, column=self.registry.columns[full], keyed=full in self.registry.stored_as_key)
        if key == "meta":
            raise InvalidFilter(f"meta.{target.name} cannot be filtered on")
        keys = self.json_keys(attr, key) + ((sub.name,) if sub else ())
        return _Operand(target, doc=self.registry.document, keys=keys)

    def compare(self, node: Compare) -> ColumnElement[bool]:
        attr, key = self.resolve(node.path)
        sub_name = node.path.sub_attr
        if attr.multi_valued:  # any value matching: `emails.type eq "work"` is `emails[type eq "work"]`
            if sub_name is None and node.op == "pr":
                return self.value_path(node.path, None)
            inner = Compare(AttrPath(None, sub_name or "value"), node.op, node.value)
            return self.value_path(AttrPath(node.path.uri, node.path.name), inner)
        if attr.type != "complex":
            if sub_name is not None:
                raise InvalidFilter(f"{attr.name} has no sub-attributes")
            return _compare(self.leaf(attr, key), node.op, node.value)
        if sub_name is None:
            if node.op == "pr":  # a complex attribute is present when any sub-attribute is; meta always is
                subs = attr.sub_attributes.values()
                return true() if key == "meta" else or_(*(_compare(self.leaf(attr, key, sub), "pr", None)
                                                         for sub in subs))
            sub_name = "value"  # `manager eq "id"` compares manager.value
        sub = attr.sub(sub_name)
        if sub is None:
            raise InvalidFilter(f"unknown attribute {attr.name}.{sub_name}")
        return _compare(self.leaf(attr, key, sub), node.op, node.value)

    def value_path(self, path: AttrPath, inner: Filter | None) -> ColumnElement[bool]:
        """`attr[filter]`: EXISTS one value of the multi-valued attribute matching the whole filter."""
        attr, key = self.resolve(path)
        if path.sub_attr is not None:
            raise InvalidFilter(f"{path} is a sub-attribute; a value filter needs a multi-valued attribute")
        if not attr.multi_valued:
            if attr.type != "complex" or inner is None:
                raise InvalidFilter(f"{attr.name} is not multi-valued")
            return self.node(_prefixed(inner, path), None)  # `name[givenName eq "x"]` is `name.givenName eq "x"`
        relation = self.registry.relations.get(key)
        if relation is not None:
            return self.related_exists(attr, key, relation, inner)
        return self.array_exists(attr, key, inner)

    def related_exists(self, attr: Attribute, key: str, relation: _Relation,
                       inner: Filter | None) -> ColumnElement[bool]:
        """EXISTS a row of the relation's table (a group member) matching the value filter."""
        subs, stmt = relation.subs(), relation.link()
        keyed = f"{key}.value" in self.registry.stored_as_key

        def related(name: str) -> _Operand:
            sub = _sub(attr, name)
            if sub.name.lower() not in subs:
                raise InvalidFilter(f"{attr.name}.{sub.name} cannot be filtered on")
            return _Operand(sub, column=subs[sub.name.lower()], keyed=keyed and sub.name == "value")

        matching = stmt.where(true() if inner is None else self.node(inner, related))
        return matching.exists() if relation.owner is None else relation.owner().in_(matching)

    def array_exists(self, attr: Attribute, key: str, inner: Filter | None) -> ColumnElement[bool]:
        """EXISTS an element of the JSON array matching the value filter; each call its own EXISTS.

        Where the registry has stand-in columns (`email` for `emails`), a resource without the
        array matches when the stand-in value does.
        """
        keys = self.json_keys(attr, key)
        elements = json_elements(self.registry.document, *keys).table_valued("value")

        def element(name: str) -> _Operand:
            sub = _sub(attr, name)
            return _Operand(sub, doc=elements.c.value, keys=(sub.name,))

        condition = true() if inner is None else self.node(inner, element)
        found = select(literal(1)).select_from(elements).where(condition).exists()
        stand_in = self.registry.stand_ins.get(key)
        if stand_in is None:
            return found

        def standing(name: str) -> _Operand:
            sub = _sub(attr, name)
            return _Operand(sub, column=stand_in.get(sub.name.lower(), literal(None, String())))

        every = json_elements(self.registry.document, *keys).table_valued("value")
        no_array = ~select(literal(1)).select_from(every).exists()
        condition = true() if inner is None else self.node(inner, standing)
        return or_(found, and_(no_array, stand_in["value"].is_not(None), condition))


def _sub(attr: Attribute, name: str) -> Attribute:
    sub = attr.sub(name)
    if sub is None:
        raise InvalidFilter(f"unknown attribute {attr.name}.{name}")
    return sub


def _prefixed(node: Filter, parent: AttrPath) -> Filter:
    """Rewrite a value filter on a singular complex attribute into filters on its sub-attributes."""
    if isinstance(node, Logical):
        return Logical(node.op, _prefixed(node.left, parent), _prefixed(node.right, parent))
    if isinstance(node, Not):
        return Not(_prefixed(node.operand, parent))
    if isinstance(node, ValuePath) or node.path.uri or node.path.sub_attr:
        raise InvalidFilter(f"{node} is not a sub-attribute filter")
    return Compare(AttrPath(parent.uri, parent.name, node.path.name), node.op, node.value)


_ORDERING = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def _compare(operand: _Operand, op: str, value: Any) -> ColumnElement[bool]:
    """One attribute comparison, typed by the attribute's schema type (RFC 7644 section 3.4.2.2)."""
    attr = operand.attr
    if op == "pr":
        return _present(operand)
    if value is None:  # `eq null` means unassigned (RFC 7643 section 2.5)
        if op in ("eq", "ne"):
            return not_(_present(operand)) if op == "eq" else _present(operand)
        raise InvalidFilter(f"{op} null is not a valid comparison")
    if op == "ne":
        return not_(func.coalesce(_compare(operand, "eq", value), false()))
    if attr.type == "complex":
        raise InvalidFilter(f"{attr.name} is complex; compare one of its sub-attributes")
    if attr.type == "boolean":
        return _compare_boolean(operand, op, value)
    if attr.type in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or op in ("co", "sw", "ew"):
            raise InvalidFilter(f"{attr.name} is a number: {op} {json.dumps(value)} is not supported")
        expr = operand.column if operand.column is not None else json_number(operand.json, *operand.keys)
        return expr == value if op == "eq" else _ORDERING[op](expr, value)
    if attr.type == "dateTime":
        if operand.column is None or op in ("co", "sw", "ew"):
            raise InvalidFilter(f"{attr.name} is a dateTime: {op} is not supported")
        when = parse_datetime(value)
        return operand.column == when if op == "eq" else _ORDERING[op](operand.column, when)
    return _compare_string(operand, op, value)


def _compare_boolean(operand: _Operand, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"  # `active eq "true"`, as some clients send it
    if op != "eq" or not isinstance(value, bool):
        raise InvalidFilter(f"{operand.attr.name} is a boolean: only eq, ne and pr with true or false apply")
    if operand.column is not None:
        return operand.column == value
    return json_repr(operand.json, *operand.keys) == ("true" if value else "false")


def _compare_string(operand: _Operand, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidFilter(f"{operand.attr.name} is a string: compare it with a string")
    value = str(value)
    expr = operand.text()
    if not operand.attr.case_exact:
        if operand.keyed:
            value = name_key(value)
        else:
            value, expr = value.lower(), func.lower(expr)
    if op == "eq":
        return expr == value
    if op == "co":  # no LIKE: `%`, `_` and `\` in values stay literal on every database
        return text_position(expr, value) > 0
    if op == "sw":
        return func.substr(expr, 1, len(value)) == value
    if op == "ew":
        return func.substr(expr, func.length(expr) - len(value) + 1) == value
    return _ORDERING[op](expr, value)


def _present(operand: _Operand) -> ColumnElement[bool]:
    """`pr`: assigned and not empty (RFC 7644 section 3.4.2.2; RFC 7643 section 2.5)."""
    if operand.column is None:
        return json_present(operand.json, *operand.keys)
    if operand.attr.type in ("string", "reference", "binary"):
        return and_(operand.column.is_not(None), operand.column != "")
    return operand.column.is_not(None)
