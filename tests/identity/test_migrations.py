"""The migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

import warnings

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

import audit.models  # noqa: F401
import saml.models  # noqa: F401
from identity.db import Database
from identity.models import Base


def _index_names(db: Database) -> set[str]:
    query = ("SELECT name FROM sqlite_master WHERE type = 'index'" if db.dialect == "sqlite"
             else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    with db.reading() as session:
        return set(session.scalars(text(query)))


def test_every_model_index_exists_after_migrating(db: Database) -> None:
    expected = {index.name for table in Base.metadata.tables.values() for index in table.indexes}
    assert expected - _index_names(db) == set()


def test_no_drift_between_models_and_migrations(db: Database) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # expression indexes cannot be reflected; checked above
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    diff = [d for d in diff if not (d[0] in ("add_index", "remove_index") and _is_expression(d[1]))]
    # SQLite reflects a foreign key added by ALTER TABLE without its name: compare what it links.
    added = {_fk_shape(d[1]) for d in diff if d[0] == "add_fk"}
    removed = {_fk_shape(d[1]) for d in diff if d[0] == "remove_fk"}
    assert added == removed
    assert [d for d in diff if d[0] not in ("add_fk", "remove_fk")] == []


def _fk_shape(fk) -> tuple:
    return (fk.table.name, tuple(c.name for c in fk.columns), fk.referred_table.name,
            tuple(e.column.name for e in fk.elements))


def _is_expression(index) -> bool:
    return any(not hasattr(c, "name") or c.name is None for c in index.expressions) or \
        index.name in {i.name for t in Base.metadata.tables.values() for i in t.indexes
                       if any(not hasattr(e, "key") for e in i.expressions)}
