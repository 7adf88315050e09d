"""One attribute comparison of a SCIM filter as SQL, typed by the attribute's schema type.

RFC 7644 section 3.4.2.2: `eq`, `ne`, `co`, `sw`, `ew`, `gt`, `ge`, `lt`, `le` and `pr`. An
`Operand` says where the value lives (a column, or a path in a JSON document, scim.sqljson).
userName and email values are stored as their key (identity.names.name_key): a filter compares
the key of its value with the stored key, never the database's own `lower()`. Other caseExact=false
strings are folded on both sides in SQL (scim.sqljson.folded): `lower()` folds ASCII only on SQLite and on a
PostgreSQL of locale C, and Python's `.lower()` of the value against it never matched `Ä`.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import SQLColumnExpression, String, and_, false, func, literal, not_
from sqlalchemy.sql.elements import ColumnElement

from identity.names import name_key
from scim.errors import InvalidFilter
from scim.schema import Attribute
from scim.sqljson import folded, json_number, json_present, json_repr, json_text, text_position
from scim.syntax import parse_datetime


@dataclass(frozen=True)
class Operand:
    """Where one attribute's value lives: a SQL expression, or a path in a JSON document."""

    attr: Attribute
    column: SQLColumnExpression[Any] | None = None
    doc: SQLColumnExpression[Any] | None = None
    keys: tuple[str | int, ...] = ()
    # Stored as its key (identity.names.name_key; ids we generate are lowercase, their own key):
    # compare the key of the value with the column as it is.
    keyed: bool = False
    # Stored without surrounding spaces (userName, a group's displayName): `eq` and `ne` compare the
    # value the same way, so that an IdP's lookup of what it sent finds what it created.
    stripped: bool = False

    def text(self) -> SQLColumnExpression[Any]:
        return self.column if self.column is not None else json_text(self.json, *self.keys)

    @property
    def json(self) -> SQLColumnExpression[Any]:
        assert self.doc is not None, "a column operand has no JSON document"
        return self.doc


ORDERING = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


def compare(operand: Operand, op: str, value: Any) -> ColumnElement[bool]:
    """One attribute comparison, typed by the attribute's schema type (RFC 7644 section 3.4.2.2)."""
    attr = operand.attr
    if op == "pr":
        return present(operand)
    if value is None:  # `eq null` means unassigned (RFC 7643 section 2.5)
        if op in ("eq", "ne"):
            return not_(present(operand)) if op == "eq" else present(operand)
        raise InvalidFilter(f"{op} null is not a valid comparison")
    if op == "ne":
        return not_(func.coalesce(compare(operand, "eq", value), false()))
    if attr.type == "complex":
        raise InvalidFilter(f"{attr.name} is complex; compare one of its sub-attributes")
    if attr.type == "boolean":
        return _compare_boolean(operand, op, value)
    if attr.type in ("integer", "decimal"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or op in ("co", "sw", "ew"):
            raise InvalidFilter(f"{attr.name} is a number: {op} {json.dumps(value)} is not supported")
        expr = operand.column if operand.column is not None else json_number(operand.json, *operand.keys)
        return expr == value if op == "eq" else ORDERING[op](expr, value)
    if attr.type == "dateTime":
        if operand.column is None or op in ("co", "sw", "ew"):
            raise InvalidFilter(f"{attr.name} is a dateTime: {op} is not supported")
        when = parse_datetime(value)
        return operand.column == when if op == "eq" else ORDERING[op](operand.column, when)
    return _compare_string(operand, op, value)


def _compare_boolean(operand: Operand, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"  # `active eq "true"`, as some clients send it
    if op != "eq" or not isinstance(value, bool):
        raise InvalidFilter(f"{operand.attr.name} is a boolean: only eq, ne and pr with true or false apply")
    if operand.column is not None:
        return operand.column == value
    return json_repr(operand.json, *operand.keys) == ("true" if value else "false")


def _compare_string(operand: Operand, op: str, value: Any) -> ColumnElement[bool]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidFilter(f"{operand.attr.name} is a string: compare it with a string")
    value = str(value)
    if operand.stripped and op in ("eq", "ne"):
        value = value.strip()
    expr: SQLColumnExpression[Any] = operand.text()
    given: Any = value
    if not operand.attr.case_exact:
        if operand.keyed:
            given = name_key(value)
        else:
            given, expr = folded(literal(value, String())), folded(expr)
    if op == "co":  # no LIKE: `%`, `_` and `\` in values stay literal on every database
        return text_position(expr, given) > 0
    if op == "sw":
        expr = func.substr(expr, 1, func.length(given))
    elif op == "ew":
        expr = func.substr(expr, func.length(expr) - func.length(given) + 1)
    compared: ColumnElement[bool] = (operator.eq if op in ("eq", "sw", "ew") else ORDERING[op])(expr, given)
    return compared


def present(operand: Operand) -> ColumnElement[bool]:
    """`pr`: assigned and not empty (RFC 7644 section 3.4.2.2; RFC 7643 section 2.5)."""
    if operand.column is None:
        return json_present(operand.json, *operand.keys)
    if operand.attr.type in ("string", "reference", "binary"):
        return and_(operand.column.is_not(None), operand.column != "")
    return operand.column.is_not(None)
