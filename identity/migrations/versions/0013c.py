"""saml: pending AuthnRequests keep their client's address (capped per address); SP private keys
sealed at rest under SECRET_KEY (saml.sp_keys)

The keys are sealed here when this process knows SECRET_KEY: from the environment, or the
embedded default's `secret_key` file when it exists already (this migration never creates one).
Otherwise they stay as they are and the service seals each at its first use (saml.web.settings),
or `identity saml reseal-keys` seals them all. Plaintext and sealed rows are told apart by the
`sealed:v1:` prefix, so every mix of them works. The downgrade opens sealed keys again when it
knows the SECRET_KEY they are sealed under, and refuses to run otherwise (the old code could not
read them).

Revision ID: 0013c
Revises: 0012
"""

import os

import sqlalchemy as sa
from alembic import op

from identity import config
from saml import sp_keys

revision = "0013c"
down_revision = "0012"
branch_labels = None
depends_on = None


def _secrets() -> tuple[str, ...]:
    """SECRET_KEY (and SECRET_KEY_PREVIOUS) as the service will see them, or () when unknown here."""
    current = os.environ.get("SECRET_KEY")
    if not current:
        path = config.data_dir() / "secret_key"
        current = path.read_text().strip() if path.exists() else ""
    return (current, *sp_keys.previous_secrets(os.environ.get("SECRET_KEY_PREVIOUS"))) if current else ()


def _keys() -> sa.TableClause:
    return sa.table("saml_connections", sa.column("org_id", sa.String), sa.column("sp_key_pem", sa.Text))


def upgrade() -> None:
    with op.batch_alter_table("saml_pending_requests") as batch:
        batch.add_column(sa.Column("client_address", sa.String(length=64), nullable=True))
    op.create_index("ix_saml_pending_requests_client", "saml_pending_requests", ["client_address", "expires_at"])
    secrets = _secrets()
    if not secrets:
        return  # sealed at first use by the service
    keys, bind = _keys(), op.get_bind()
    for org_id, stored in bind.execute(sa.select(keys.c.org_id, keys.c.sp_key_pem)).all():
        if not sp_keys.is_sealed(stored):
            bind.execute(keys.update().where(keys.c.org_id == org_id)
                         .values(sp_key_pem=sp_keys.seal(secrets[0], org_id, stored)))


def downgrade() -> None:
    keys, bind = _keys(), op.get_bind()
    rows = [(org_id, stored) for org_id, stored in bind.execute(sa.select(keys.c.org_id, keys.c.sp_key_pem))
            if sp_keys.is_sealed(stored)]
    if rows and not _secrets():
        raise RuntimeError("SP private keys are sealed: set SECRET_KEY to the service's to open them before "
                           "downgrading below 0013c")
    for org_id, stored in rows:
        bind.execute(keys.update().where(keys.c.org_id == org_id)
                     .values(sp_key_pem=sp_keys.unseal(_secrets(), org_id, stored)))
    op.drop_index("ix_saml_pending_requests_client", table_name="saml_pending_requests")
    with op.batch_alter_table("saml_pending_requests") as batch:
        batch.drop_column("client_address")
