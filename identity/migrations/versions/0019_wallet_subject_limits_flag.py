"""A wallet says whether its team has key or member limits (read under the wallet's row lock).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(sa.Column("has_subject_limits", sa.Boolean(), nullable=False, server_default=sa.text("false")))
    op.execute("UPDATE wallets SET has_subject_limits = EXISTS "
               "(SELECT 1 FROM spend_limits WHERE spend_limits.team_id = wallets.team_id)")


def downgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("has_subject_limits")
