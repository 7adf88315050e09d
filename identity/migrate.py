"""Alembic migrations, run programmatically by `identity db upgrade` and `identity serve`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from identity.db import normalize_url
from identity.db_failures import outcome_known

MIGRATIONS = Path(__file__).parent / "migrations"
# How to tell whether migrations whose COMMIT lost its connection were made: run them again, which
# migrates from wherever the database is (alembic_version is committed with the migrations).
RUN_IT_AGAIN = "run `identity db upgrade` again: it is idempotent"


def alembic_config(url: str) -> Config:
    """Return an Alembic config for the database at `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision`.

    On PostgreSQL alembic runs every pending migration in one transaction (transactional DDL) and
    commits it, with alembic_version, on the engine of identity.migrations.env (identity.db's, which
    notes a COMMIT that lost its connection): that loss is CommitUnknown, never "cannot be used"."""
    with outcome_known(RUN_IT_AGAIN):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` back to `revision` (for tests of a migration's data)."""
    command.downgrade(alembic_config(url), revision)
