"""A hot SELECT run on the driver's own cursor, compiled by SQLAlchemy once per dialect.

For the statement on the service's hottest path only: the gateway's key check, sent on every LLM
request (identity.gateway). SQLAlchemy's execution of one statement (its execution context, its
result object, and psycopg's `cursor.description`, which SQLAlchemy reads on every execution and
psycopg builds anew as one Column object per column) cost more CPU than the rest of the check:
measured in process on PostgreSQL with `benchmarks/profile_key_check.py --profile` (docs/performance.md).

What stays the same: the statement is SQLAlchemy's (compiled from the same Core select, with its
literal parameters), the values are what SQLAlchemy would return (each column's result processor
applied: the UTC datetimes and enums of identity.model_base; tested against SQLAlchemy's own
execution on both databases), and listeners of `before_cursor_execute` on the engine still see
the statement.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for a positional paramstyle
    fixed: dict[str, Any]  # the statement's own literal parameters
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # the columns that have one, by position


class DriverRead:
    """`DriverRead(select(...)).rows(conn, name=value, ...)`: the rows as named tuples."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self.row: Any = namedtuple("Row", statement.selected_columns.keys())  # type: ignore[misc]
        self._by_dialect: dict[str, _Compiled] = {}

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        compiled = self._by_dialect.get(conn.dialect.name) or self._compile(conn.dialect)
        named = {**compiled.fixed, **params}
        args: Any = tuple(named[name] for name in compiled.positions) if compiled.positions is not None else named
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if conn._has_events or conn.engine._has_events:  # e.g. tests counting statements
                conn.dispatch.before_cursor_execute(conn, cursor, compiled.sql, args, None, False)
            cursor.execute(compiled.sql, args)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        rows = []
        for raw in fetched:
            values = list(raw)
            for at, process in compiled.processors:
                if values[at] is not None:  # NULL is None whatever the type
                    values[at] = process(values[at])
            rows.append(self.row._make(values))
        return rows

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        processors = tuple((at, process) for at, column in enumerate(self.statement.selected_columns)
                           if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)))
        made = _Compiled(compiled.string, positions, {k: v for k, v in compiled.params.items() if v is not None},
                         processors)
        self._by_dialect[dialect.name] = made
        return made
