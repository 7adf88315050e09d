"""Alembic environment: the domain's metadata (identity.models, with saml.models) and the audit log's."""

from alembic import context
from sqlalchemy import pool

import identity.wallet_models  # noqa: F401  (the wallets' tables, on the domain's metadata)
import saml.models  # noqa: F401  (SAML tables, on the domain's metadata)
from identity.db import make_engine
from identity.models import METADATAS

config = context.config
target_metadata = list(METADATAS)


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
