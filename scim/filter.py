"""SCIM filters (RFC 7644 section 3.4.2.2) parsed and translated into SQLAlchemy expressions.

Parsing is scim.syntax (scim2-filter-parser's lexer, corrected, and a recursive-descent parser);
the library's SQL transpiler is not used at all (FINDINGS.md lists its bugs).

Translation goes through an attribute registry per resource type (scim.filter_registry: `USERS`,
`GROUPS`), keyed case-insensitively, and compares each attribute as its schema type says
(scim.filter_compare). Multi-valued attributes become EXISTS over their rows or their JSON
array elements, here. Anything this module does not understand raises `InvalidFilter`, never a
silent match-all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import SQLColumnExpression, String, and_, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from scim.errors import InvalidFilter
from scim.filter_compare import Operand, compare
from scim.filter_registry import GROUPS, USERS, Registry, Relation, owned_by, sub_of
from scim.schema import Attribute
from scim.sqljson import json_elements, json_number, json_repr, json_text
from scim.syntax import AttrPath, Compare, Filter, Logical, Not, PatchPath, ValuePath, parse_filter, parse_path

__all__ = [
    "USERS", "GROUPS", "Registry", "filter_users", "filter_groups", "to_sql", "sort_key", "bounded",
    # re-exported from scim.syntax
    "AttrPath", "Compare", "Filter", "Logical", "Not", "PatchPath", "ValuePath", "parse_filter", "parse_path",
]


def filter_users(text: str) -> ColumnElement[bool]:
    """Return the WHERE expression over `User` for a SCIM filter; raise InvalidFilter."""
    return to_sql(parse_filter(text), USERS)


def filter_groups(text: str) -> ColumnElement[bool]:
    """Return the WHERE expression over `IdpGroup` for a SCIM filter; raise InvalidFilter."""
    return to_sql(parse_filter(text), GROUPS)


def to_sql(node: Filter, registry: Registry) -> ColumnElement[bool]:
    """Translate a parsed filter into a boolean expression over the registry's model."""
    return _Translator(registry).node(node, None)


def bounded(node: Filter, registry: Registry, scope: str | None = None) -> bool:
    """Tell whether a filter is a lookup: it holds, in every branch, `eq` on an identifying attribute.

    Such a filter (`userName eq`, `externalId eq`, `emails[type eq "work"].value eq`, a group's
    `displayName eq`) matches a handful of resources in an org of any size; scim.listing reads
    them through that attribute's index alone, never by walking the org in list order.
    """
    if isinstance(node, Logical):
        left, right = bounded(node.left, registry, scope), bounded(node.right, registry, scope)
        return (left or right) if node.op == "and" else (left and right)
    if isinstance(node, ValuePath):
        return scope is None and bounded(node.filter, registry, registry.resolve(node.path)[1])
    if isinstance(node, Not) or node.op != "eq" or node.value is None:
        return False
    if scope is not None:
        return node.path.sub_attr is None and f"{scope}.{node.path.name.lower()}" in registry.identifying
    attr, key = registry.resolve(node.path)
    sub = node.path.sub_attr or ("value" if attr.multi_valued else None)
    return (key if sub is None else f"{key}.{sub.lower()}") in registry.identifying


def sort_key(registry: Registry, sort_by: str) -> SQLColumnExpression[Any]:
    """Return the expression to ORDER BY for `sortBy` (RFC 7644 section 3.4.2.3); raise InvalidFilter.

    Strings that are not caseExact sort case-insensitively; a multi-valued attribute sorts by its
    first value (`emails` by the primary email column). Callers add a unique tie-breaker (id).
    """
    path = parse_path(sort_by)
    attr, key = registry.resolve(path.attr)
    sub = None if path.sub_attr is None else sub_of(attr, path.sub_attr)
    complex_alone = attr.type == "complex" and not attr.multi_valued and sub is None  # `name`, `meta`
    related = key in registry.relations and key not in registry.stand_ins  # `emails` sorts by its column
    if path.value_filter is not None or related or complex_alone:
        raise InvalidFilter(f"cannot sort by {sort_by!r}")
    if attr.multi_valued:
        sub = sub or sub_of(attr, "value")
        stand_in = registry.stand_ins.get(key, {}).get(sub.name.lower())
        operand = Operand(sub, column=stand_in) if stand_in is not None else \
            Operand(sub, doc=registry.document, keys=(*registry.json_keys(attr, key), 0, sub.name))
    else:
        operand = registry.leaf(attr, key, sub)
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

    def node(self, node: Filter, scope: Callable[[str], Operand] | None) -> ColumnElement[bool]:
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
            return compare(scope(node.path.name), node.op, node.value)
        return self.compare(node)

    def compare(self, node: Compare) -> ColumnElement[bool]:
        attr, key = self.registry.resolve(node.path)
        sub_name = node.path.sub_attr
        if attr.multi_valued:  # any value matching: `emails.type eq "work"` is `emails[type eq "work"]`
            if sub_name is None and node.op == "pr":
                return self.value_path(node.path, None)
            inner = Compare(AttrPath(None, sub_name or "value"), node.op, node.value)
            return self.value_path(AttrPath(node.path.uri, node.path.name), inner)
        if attr.type != "complex":
            if sub_name is not None:
                raise InvalidFilter(f"{attr.name} has no sub-attributes")
            return compare(self.registry.leaf(attr, key), node.op, node.value)
        if sub_name is None:
            if node.op == "pr":  # a complex attribute is present when any sub-attribute is; meta always is
                subs = attr.sub_attributes.values()
                return true() if key == "meta" else or_(*(compare(self.registry.leaf(attr, key, sub), "pr", None)
                                                         for sub in subs))
            sub_name = "value"  # `manager eq "id"` compares manager.value
        sub = attr.sub(sub_name)
        if sub is None:
            raise InvalidFilter(f"unknown attribute {attr.name}.{sub_name}")
        return compare(self.registry.leaf(attr, key, sub), node.op, node.value)

    def value_path(self, path: AttrPath, inner: Filter | None) -> ColumnElement[bool]:
        """`attr[filter]`: EXISTS one value of the multi-valued attribute matching the whole filter."""
        attr, key = self.registry.resolve(path)
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

    def related_exists(self, attr: Attribute, key: str, relation: Relation,
                       inner: Filter | None) -> ColumnElement[bool]:
        """EXISTS a row of the relation's table (a group member) matching the value filter."""
        subs, stmt = relation.subs(), relation.link()
        keyed = f"{key}.value" in self.registry.stored_as_key

        def related(name: str) -> Operand:
            sub = sub_of(attr, name)
            if sub.name.lower() not in subs:
                raise InvalidFilter(f"{attr.name}.{sub.name} cannot be filtered on")
            return Operand(sub, column=subs[sub.name.lower()], keyed=keyed and sub.name == "value")

        matching = stmt.where(true() if inner is None else self.node(inner, related))
        return matching.exists() if relation.owner is None else owned_by(relation.owner(), matching)

    def array_exists(self, attr: Attribute, key: str, inner: Filter | None) -> ColumnElement[bool]:
        """EXISTS an element of the JSON array matching the value filter; each call its own EXISTS.

        Where the registry has stand-in columns (`email` for `emails`), a resource without the
        array matches when the stand-in value does.
        """
        keys = self.registry.json_keys(attr, key)
        elements = json_elements(self.registry.document, *keys).table_valued("value")

        def element(name: str) -> Operand:
            sub = sub_of(attr, name)
            return Operand(sub, doc=elements.c.value, keys=(sub.name,))

        condition = true() if inner is None else self.node(inner, element)
        found = select(literal(1)).select_from(elements).where(condition).exists()
        stand_in = self.registry.stand_ins.get(key)
        if stand_in is None:
            return found

        def standing(name: str) -> Operand:
            sub = sub_of(attr, name)
            return Operand(sub, column=stand_in.get(sub.name.lower(), literal(None, String())))

        every = json_elements(self.registry.document, *keys).table_valued("value")
        no_array = ~select(literal(1)).select_from(every).exists()
        condition = true() if inner is None else self.node(inner, standing)
        return or_(found, and_(no_array, stand_in["value"].is_not(None), condition))


def _prefixed(node: Filter, parent: AttrPath) -> Filter:
    """Rewrite a value filter on a singular complex attribute into filters on its sub-attributes."""
    if isinstance(node, Logical):
        return Logical(node.op, _prefixed(node.left, parent), _prefixed(node.right, parent))
    if isinstance(node, Not):
        return Not(_prefixed(node.operand, parent))
    if isinstance(node, ValuePath) or node.path.uri or node.path.sub_attr:
        raise InvalidFilter(f"{node} is not a sub-attribute filter")
    return Compare(AttrPath(parent.uri, parent.name, node.path.name), node.op, node.value)
