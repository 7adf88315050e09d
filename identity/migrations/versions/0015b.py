"""Keys and credentials of issue 16 (part b): rotation, team service keys, creators, the gateway's credential.

- api_keys.user_id may be NULL: a team service key belongs to its team, not to a person.
- api_keys.expires_at: set on the old key when it is rotated (the end of its grace period);
  api_keys.rotated_to: the key that replaced it.
- api_keys.created_by_*: who made each key (a service key has no holder to ask).
- scim_tokens.created_by_*, scim_clients.created_by_*: who made each credential, from now on.
- scim_clients.last_used_at: when a client was last issued an access token.
- gateway_credentials: the operator's service credentials with which a gateway verifies keys.

Revision ID: 0015b
Revises: 0014
"""
import warnings

import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0015b"
down_revision = "0014"
branch_labels = None
depends_on = None

CREATORS = ("api_keys", "scim_tokens", "scim_clients")


def _creator_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [sa.Column("created_by_type", sa.String(32), nullable=True),
            sa.Column("created_by_id", sa.String(80), nullable=True),
            sa.Column("created_by", sa.String(200), nullable=True)]


def upgrade() -> None:
    with warnings.catch_warnings(), op.batch_alter_table("api_keys") as batch:
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        batch.alter_column("user_id", existing_type=sa.String(36), nullable=True)
        batch.add_column(sa.Column("expires_at", audit.models.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("rotated_to", sa.String(36), nullable=True))
    for table in CREATORS:
        with warnings.catch_warnings(), op.batch_alter_table(table) as batch:
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            for column in _creator_columns():
                batch.add_column(column)
    with warnings.catch_warnings(), op.batch_alter_table("scim_clients") as batch:
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        batch.add_column(sa.Column("last_used_at", audit.models.UTCDateTime(), nullable=True))
    op.create_table(
        "gateway_credentials",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", audit.models.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_credentials"),
        sa.UniqueConstraint("prefix", name="uq_gateway_credentials_prefix"),
    )


def downgrade() -> None:
    op.drop_table("gateway_credentials")
    with warnings.catch_warnings(), op.batch_alter_table("scim_clients") as batch:
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        batch.drop_column("last_used_at")
    for table in CREATORS:
        with warnings.catch_warnings(), op.batch_alter_table(table) as batch:
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            for name in ("created_by", "created_by_id", "created_by_type"):
                batch.drop_column(name)
    op.execute("DELETE FROM api_keys WHERE user_id IS NULL")  # team service keys have no place in the old schema
    with warnings.catch_warnings(), op.batch_alter_table("api_keys") as batch:
        warnings.simplefilter("ignore", sa.exc.SAWarning)
        batch.drop_column("rotated_to")
        batch.drop_column("expires_at")
        batch.alter_column("user_id", existing_type=sa.String(36), nullable=False)
