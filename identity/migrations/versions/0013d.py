"""Keep a client's X-Request-Id beside the server's request id on audit events (issue 14, part d).

The column is nullable and outside what an event's hash covers (audit.log.UNHASHED), so events
written before it verify as they did.

Revision ID: 0013d
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013d"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("audit_events", sa.Column("client_request_id", sa.String(64), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch copy of the table, which on SQLite would
    # drop the append-only triggers with the old table.
    op.execute("ALTER TABLE audit_events DROP COLUMN client_request_id")
