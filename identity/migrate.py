"""Alembic migrations, run programmatically by `identity db upgrade` and `identity serve`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from identity.db import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """Return an Alembic config for the database at `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at `url` back to `revision` (for tests of a migration's data)."""
    command.downgrade(alembic_config(url), revision)
