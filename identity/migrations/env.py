"""Alembic environment: the domain's metadata (identity.models, with saml.models) and the audit log's."""

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import context
from sqlalchemy import Connection, pool, text

import identity.wallet_models  # noqa: F401  (the wallets' tables, on the domain's metadata)
import saml.models  # noqa: F401  (SAML tables, on the domain's metadata)
from identity.db import make_engine
from identity.models import METADATAS

config = context.config
target_metadata = list(METADATAS)
# PostgreSQL's advisory lock of the migrations ("identity" in ASCII): one key for every host.
MIGRATION_LOCK = 0x6964656E74697479


@contextmanager
def one_migrator(connection: Connection) -> Iterator[None]:
    """Let one process at a time migrate a PostgreSQL database: each host of a release runs `identity
    serve` or `identity db upgrade` at its start, and without the lock each read the same old version
    and ran the same migration, all but the first dying on "already exists".

    A session lock, taken before alembic reads the version and held until the migrations are
    committed, so that a migration that commits on its way would not let another in. A failed
    migration leaves it to the connection's close (NullPool: the session ends, and its locks).
    SQLite, the embedded default of one host, takes no lock here."""
    if connection.dialect.name != "postgresql":
        yield
        return
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
    connection.commit()  # alembic must begin a transaction of its own, not find this one open
    yield
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
    connection.commit()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection, one_migrator(connection):
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
