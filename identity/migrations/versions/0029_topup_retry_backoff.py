"""A top-up request failed at the payment hook is retried after a backoff, not at once:
`topup_requests.next_attempt_at` (identity.topups.retry_after). None for the requests already there:
each is tried at its next delivery, as before.

Revision ID: 0029
Revises: 0028
"""

import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("topup_requests") as batch:
        batch.add_column(sa.Column("next_attempt_at", audit.models.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("topup_requests") as batch:
        batch.drop_column("next_attempt_at")
