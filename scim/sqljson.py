"""Reading the JSON `attributes` column in SQL, identically on SQLite and PostgreSQL.

Each construct takes a JSON document expression and a path (a tuple of keys, bound as a parameter
through SQLAlchemy's JSONPathType, which formats it per dialect) and compiles to that dialect's
functions. They never raise on data of an unexpected JSON type: a string where a number was
expected, or an object where an array was, reads as no value, so a filter can only fail to
match, never fail the query. The column is `json` on PostgreSQL (not `jsonb`), hence `json_*`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Numeric, SQLColumnExpression, String, bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import JSON


def json_path(*keys: str | int) -> BindParameter[Any]:
    """Return a bound JSON path: `'$."a"."b"'` on SQLite, `'{a,b}'` on PostgreSQL."""
    return bindparam(None, keys, type_=JSON.JSONPathType(), unique=True)


class _JsonFunction(FunctionElement[Any]):
    """A function of (document, path); subclasses set the SQL per dialect."""

    inherit_cache = True

    def __init__(self, doc: SQLColumnExpression[Any], *keys: str | int) -> None:
        super().__init__(doc, json_path(*keys))


class json_text(_JsonFunction):  # noqa: N801 - a SQL function
    """The scalar at path as SQL text (a number as its digits); NULL when missing or JSON null."""

    type = String()
    name = "json_text"
    inherit_cache = True


class json_repr(_JsonFunction):  # noqa: N801
    """The JSON text of the value at path (`true`, `"x"`, `[]`); NULL when missing."""

    type = String()
    name = "json_repr"
    inherit_cache = True


class json_number(_JsonFunction):  # noqa: N801
    """The number at path; NULL when missing or not a JSON number."""

    type = Numeric()
    name = "json_number"
    inherit_cache = True


class json_present(_JsonFunction):  # noqa: N801
    """True when the value at path is neither missing, null, "", [] nor {} (RFC 7644 `pr`)."""

    type = Boolean()
    name = "json_present"
    inherit_cache = True


class json_elements(_JsonFunction):  # noqa: N801
    """The elements of the array at path, as a table with one `value` column; none if not an array.

    Use as `json_elements(doc, "emails").table_valued("value")`.
    """

    name = "json_elements"
    inherit_cache = True


def _args(element: _JsonFunction, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    doc, path = (compiler.process(clause, **kw) for clause in element.clauses)
    return doc, path


_EMPTY = "('null', '\"\"', '[]', '{}')"


@compiles(json_text, "sqlite")
def _text_sqlite(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return (f"CASE WHEN json_type({doc}, {path}) IN ('text', 'integer', 'real') "
            f"THEN CAST(json_extract({doc}, {path}) AS TEXT) END")


@compiles(json_text, "postgresql")
def _text_pg(element: json_text, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"CASE WHEN json_typeof({doc} #> {path}) IN ('string', 'number') THEN {doc} #>> {path} END"


@compiles(json_repr, "sqlite")
def _repr_sqlite(element: json_repr, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"({doc} -> {path})"


@compiles(json_repr, "postgresql")
def _repr_pg(element: json_repr, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"CAST({doc} #> {path} AS TEXT)"


@compiles(json_number, "sqlite")
def _number_sqlite(element: json_number, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"CASE WHEN json_type({doc}, {path}) IN ('integer', 'real') THEN json_extract({doc}, {path}) END"


@compiles(json_number, "postgresql")
def _number_pg(element: json_number, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"CASE WHEN json_typeof({doc} #> {path}) = 'number' THEN CAST({doc} #>> {path} AS NUMERIC) END"


@compiles(json_present, "sqlite")
def _present_sqlite(element: json_present, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"coalesce(({doc} -> {path}) NOT IN {_EMPTY}, 0)"


@compiles(json_present, "postgresql")
def _present_pg(element: json_present, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    value = f"({doc} #> {path})"  # no jsonb: a cast to it fails on `\u0000`, which json accepts
    return (f"coalesce(CASE json_typeof({value}) WHEN 'string' THEN CAST({value} AS TEXT) <> '\"\"' "
            f"WHEN 'array' THEN json_array_length({value}) > 0 "
            f"WHEN 'object' THEN EXISTS (SELECT 1 FROM json_object_keys({value})) "
            f"WHEN 'number' THEN true WHEN 'boolean' THEN true ELSE false END, false)")


@compiles(json_elements, "sqlite")
def _elements_sqlite(element: json_elements, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return f"json_each(CASE WHEN json_type({doc}, {path}) = 'array' THEN json_extract({doc}, {path}) ELSE '[]' END)"


@compiles(json_elements, "postgresql")
def _elements_pg(element: json_elements, compiler: SQLCompiler, **kw: Any) -> str:
    doc, path = _args(element, compiler, **kw)
    return (f"json_array_elements(CASE WHEN json_typeof({doc} #> {path}) = 'array' "
            f"THEN {doc} #> {path} ELSE CAST('[]' AS JSON) END)")


class text_position(FunctionElement[Any]):  # noqa: N801
    """The 1-based position of `needle` in `haystack`, 0 when absent: a substring test without LIKE."""

    type = Numeric()
    name = "text_position"
    inherit_cache = True


@compiles(text_position, "sqlite")
def _position_sqlite(element: text_position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"instr({compiler.process(element.clause_expr.element, **kw)})"


@compiles(text_position, "postgresql")
def _position_pg(element: text_position, compiler: SQLCompiler, **kw: Any) -> str:
    return f"strpos({compiler.process(element.clause_expr.element, **kw)})"


class folded(FunctionElement[str]):  # noqa: N801 - a SQL function's name
    """Text folded for a caseExact=false comparison, both sides by the same SQL: on PostgreSQL ICU's
    Unicode lower() (`und-x-icu`, whatever the database's locale), on SQLite identity.names.name_key
    (the function identity.db_sqlite registers on every connection)."""

    type = String()
    name = "folded"
    inherit_cache = True


@compiles(folded, "sqlite")
def _folded_sqlite(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f"name_key({compiler.process(element.clause_expr.element, **kw)})"


@compiles(folded, "postgresql")
def _folded_postgresql(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return f'lower(({compiler.process(element.clause_expr.element, **kw)}) COLLATE "und-x-icu")'
