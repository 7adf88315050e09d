"""A hot SELECT run on the driver's own cursor, compiled by SQLAlchemy once per dialect.

For the hottest statements only. The gateway's key check, sent on every LLM request (identity.gateway):
SQLAlchemy's execution of its one statement (the execution context, the result object, and
psycopg's `cursor.description`, which SQLAlchemy reads on every execution and psycopg builds anew
as one Column object per column) cost more CPU than the rest of the check, measured in process
on PostgreSQL with `benchmarks/profile_key_check.py --profile`. And a group's members as a GET
streams them (scim.listing.iter_members): for 100,000 members SQLAlchemy's rows cost 2 to 3 times
the CPU of the rest of the read (docs/performance.md has both). And the two statements of a usage
debit of one record (identity.usage_quick), posted after every LLM request: a SELECT whose
data-modifying WITHs write, run here as the read it answers.

What stays the same: the statement is SQLAlchemy's (compiled from the same Core select, with its
literal parameters), the parameters are bound as SQLAlchemy would bind them (each one's bind
processor applied: a UTC datetime stored naive, a JSON column's text), the values are what
SQLAlchemy would return (each column's result processor
applied: the UTC datetimes and enums of identity.model_base; tested against SQLAlchemy's own
execution on both databases), listeners of `before_cursor_execute` on the engine still see the
statement, and a connection the server dropped during such a read is invalidated, not put back in
the pool (as SQLAlchemy does for its own executions).
"""

from __future__ import annotations

import uuid
from collections import namedtuple
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from psycopg import RawCursor
from sqlalchemy import Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.dml import UpdateBase

from identity.db_pools import renew_all


@dataclass(frozen=True)
class _Compiled:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for a positional paramstyle
    fixed: dict[str, Any]  # the statement's own literal parameters
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]  # the columns that have one, by position
    binds: tuple[tuple[str, Callable[[Any], Any]], ...]  # the parameters whose type has a bind processor

    def arguments(self, named: dict[str, Any]) -> Any:
        """The driver's arguments: the values in order for a positional paramstyle, else the names."""
        if self.positions is None:
            return named
        return tuple(map(named.__getitem__, self.positions))


class DriverRead:
    """`DriverRead(select(...)).rows(conn, name=value, ...)`: the rows as named tuples (of an INSERT,
    UPDATE or DELETE, those of its RETURNING, or none)."""

    def __init__(self, statement: Select[Any] | UpdateBase) -> None:
        self.statement = statement
        self.columns = statement.selected_columns if isinstance(statement, Select) else statement.exported_columns
        self.row: Any = namedtuple("Row", [str(name) for name in self.columns.keys()])  # type: ignore[misc]
        self._by_dialect: dict[tuple[str, bool], _Compiled] = {}

    def rows(self, conn: Connection, **params: Any) -> list[Any]:
        raw = conn.dialect.name == "postgresql"
        compiled, args = self._prepare(conn, params, raw=raw)
        driver: Any = conn.connection.driver_connection
        cursor = RawCursor(driver) if raw else driver.cursor()
        try:
            self._announce(conn, cursor, compiled, args)
            cursor.execute(compiled.sql, args)
            if not self.columns:  # a write that returns nothing (psycopg builds `description` anew on each call)
                return []
            return [self.row._make(values) for values in self._processed(compiled, cursor.fetchall())]
        except Exception:
            _discard_if_broken(conn, driver)
            raise
        finally:
            cursor.close()

    def batches(self, conn: Connection, size: int, **params: Any) -> Iterator[list[Any]]:
        """The rows `size` at a time as plain tuples (the select's columns in order; no name per
        row, for the 100,000 rows of a big group), read as they are asked for: on PostgreSQL
        through a server-side cursor (the connection must be in a transaction), so memory stays flat."""
        compiled, args = self._prepare(conn, params)
        driver: Any = conn.connection.driver_connection
        cursor = driver.cursor(name=f"read_{uuid.uuid4().hex}") if conn.dialect.name == "postgresql" \
            else driver.cursor()
        try:
            self._announce(conn, cursor, compiled, args)
            cursor.execute(compiled.sql, args)
            while fetched := cursor.fetchmany(size):
                yield self._processed(compiled, fetched) if compiled.processors else fetched
        except Exception:
            _discard_if_broken(conn, driver)
            raise
        finally:
            cursor.close()

    def _prepare(self, conn: Connection, params: dict[str, Any], *, raw: bool = False) -> tuple[_Compiled, Any]:
        compiled = self._by_dialect.get((conn.dialect.name, raw)) or self._compile(conn.dialect, raw)
        named = {**compiled.fixed, **params}
        for name, process in compiled.binds:  # e.g. a UTC datetime stored naive, a JSON column's text
            if named.get(name) is not None:
                named[name] = process(named[name])
        return compiled, compiled.arguments(named)

    @staticmethod
    def _announce(conn: Connection, cursor: Any, compiled: _Compiled, args: Any) -> None:
        listeners = conn.dispatch.before_cursor_execute  # the connection's and its engine's
        if listeners:  # e.g. tests counting statements
            listeners(conn, cursor, compiled.sql, args, None, False)

    @staticmethod
    def _processed(compiled: _Compiled, fetched: list[Any]) -> list[Any]:
        if not compiled.processors:
            return fetched
        rows = []
        for raw in fetched:
            values = list(raw)
            for at, process in compiled.processors:
                if values[at] is not None:  # NULL is None whatever the type
                    values[at] = process(values[at])
            rows.append(tuple(values))
        return rows

    def _compile(self, dialect: Dialect, raw: bool) -> _Compiled:
        # Raw: PostgreSQL's own `$1` placeholders, which psycopg's RawCursor sends as they are. Its
        # other cursors parse `%(name)s` out of the text on every execution unless the statement has at
        # most 50 parameters (psycopg's cache): the quick debit's write has 62, and parsing it took
        # a third of the debit's CPU (benchmarks/profile_key_check.py --usage --profile).
        numbered: Any = type(dialect)
        compiled = self.statement.compile(dialect=numbered(paramstyle="numeric_dollar") if raw else dialect)
        positions = tuple(compiled.positiontup or ()) if compiled.positional else None
        processors = tuple((at, process) for at, column in enumerate(self.columns)
                           if (process := column.type.dialect_impl(dialect).result_processor(dialect, None)))
        binds = tuple((name, process) for name, bound in compiled.binds.items()
                      if (process := bound.type.dialect_impl(dialect).bind_processor(dialect)))
        made = _Compiled(compiled.string, positions, {k: v for k, v in compiled.params.items() if v is not None},
                         processors, binds)
        self._by_dialect[(dialect.name, raw)] = made
        return made


def _discard_if_broken(conn: Connection, driver: Any) -> None:
    """Invalidate `conn` when the server dropped it, so that its pool makes a new one rather than
    hand the dead one to the next request: SQLAlchemy learns of a lost connection only from its own
    executions, not from the driver's cursor used here. (psycopg says `broken`/`closed`; sqlite3 neither.)"""
    if getattr(driver, "broken", False) or getattr(driver, "closed", False):
        # As SQLAlchemy does on a disconnect it sees, the pool's other connections go too, and the
        # database's other pools' (identity.db_pools): a restarted server ended them all, and each
        # would fail a request of its own.
        renew_all(conn.engine)
        conn.invalidate()
