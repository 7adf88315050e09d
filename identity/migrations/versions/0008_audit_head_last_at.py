"""Keep the newest event's time on the chain head, so that appending reads no event.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_heads", sa.Column("last_at", audit.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_heads") as batch_op:
        batch_op.drop_column("last_at")
