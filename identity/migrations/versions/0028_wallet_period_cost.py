"""A wallet keeps its usage's cost this period (`period_cost_micros`): the running total that bounds
every key's and member's usage totals of the period, so that none can pass BIGINT
(identity.wallets.MAX_TOTAL, checked under the wallet's lock).

Filled from the usage totals of each wallet's current period (the keys' rows: each debit is on one).

Revision ID: 0028
Revises: 0027
"""

import sqlalchemy as sa
from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.add_column(sa.Column("period_cost_micros", sa.BigInteger(), nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE wallets SET period_cost_micros = COALESCE((SELECT SUM(usage_totals.cost_micros) "
               "FROM usage_totals WHERE usage_totals.team_id = wallets.team_id "
               "AND usage_totals.period_start = wallets.period_start AND usage_totals.subject_type = 'key'), 0)")


def downgrade() -> None:
    with op.batch_alter_table("wallets") as batch:
        batch.drop_column("period_cost_micros")
