"""Deleted orgs (issue 16): `orgs.deleted_at`, set once by identity.org_lifecycle.delete_org.

The row stays, so that its audit log, keyed by the org, stays exportable and verifiable by the
operator (`identity audit export|verify --org SLUG`), and its slug is never given to another org.

Revision ID: 0015a
Revises: 0014
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0015a"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orgs", sa.Column("deleted_at", audit.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("deleted_at")
