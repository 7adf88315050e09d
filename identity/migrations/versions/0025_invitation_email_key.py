"""Invitations keep their address's key (identity.names.name_key), so that "has this address a pending
invitation here?" compares as a member's addresses do (`Ann@Acme.test` and `ann@acme.test`, an `é`
typed as one character or as e and a combining accent, are one address; DESIGN.md 3.1, 3.6), and
reads an index, not the org's rows.

- `invitations.email_key`: name_key(email), computed in Python for every existing invitation.
- The index (org_id, email_key).

NOT NULL from the start: SQLite adds such a column only with a default, which PostgreSQL then drops.
Plain ADD COLUMN, not a batch: a batch would copy the table for nothing.

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

BATCH = 5000
INVITATIONS = sa.table("invitations", sa.column("id"), sa.column("email"), sa.column("email_key"))


def name_key(value: str) -> str:
    # identity.names.name_key as it stands at this revision (a migration does not follow later code).
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def upgrade() -> None:
    op.add_column("invitations", sa.Column("email_key", sa.String(1024), nullable=False, server_default=""))
    _backfill()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("invitations", "email_key", existing_type=sa.String(1024), server_default=None)
    op.create_index("ix_invitations_org_email_key", "invitations", ["org_id", "email_key"])


def _backfill() -> None:
    bind, last = op.get_bind(), ""
    update = INVITATIONS.update().where(INVITATIONS.c.id == sa.bindparam("iid")).values(email_key=sa.bindparam("key"))
    while True:
        batch = bind.execute(sa.select(INVITATIONS.c.id, INVITATIONS.c.email).where(INVITATIONS.c.id > last)
                             .order_by(INVITATIONS.c.id).limit(BATCH)).all()
        if not batch:
            return
        bind.execute(update, [{"iid": row.id, "key": name_key(row.email)} for row in batch])
        last = batch[-1].id


def downgrade() -> None:
    op.drop_index("ix_invitations_org_email_key", table_name="invitations")
    op.execute("ALTER TABLE invitations DROP COLUMN email_key")  # SQLite 3.35+ and PostgreSQL alike
