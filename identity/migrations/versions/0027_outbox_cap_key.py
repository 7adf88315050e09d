"""Outbox mails keep the key their org's cap on mails to one address counts them under
(identity.outbox.ensure_under_cap): `outbox_mails.cap_key`, name_key(recipient), and the index
(org_id, cap_key, created_at) that makes the count a range read.

Mails queued before it keep None and are not counted: which of the sign-in links among them an
anonymous browser asked for (outside the cap) was not kept, and the cap counts one day back, so
it holds fully a day after the upgrade.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox_mails", sa.Column("cap_key", sa.String(1024), nullable=True))
    op.create_index("ix_outbox_mails_org_cap_key", "outbox_mails", ["org_id", "cap_key", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_mails_org_cap_key", table_name="outbox_mails")
    op.execute("ALTER TABLE outbox_mails DROP COLUMN cap_key")  # SQLite 3.35+ and PostgreSQL alike
