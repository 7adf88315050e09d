"""Invitations by email (issue 16, part c): the mail outbox; sign-in links asked for by email, bound
to the asking browser and rate-limited per address and per client.

Revision ID: 0015c
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

from audit.models import UTCDateTime

revision = "0015c"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_mails",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("org_id", sa.String(36), sa.ForeignKey("orgs.id", name="fk_outbox_mails_org_id_orgs"),
                  nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("ref_type", sa.String(32), nullable=False),
        sa.Column("ref_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("link", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("claimed_until", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_outbox_mails_org_created", "outbox_mails", ["org_id", "created_at"])
    op.create_index("ix_outbox_mails_status", "outbox_mails", ["status", "created_at"])
    op.create_index("ix_outbox_mails_ref", "outbox_mails", ["ref_id"])
    with op.batch_alter_table("sign_in_links") as batch:
        batch.add_column(sa.Column("browser_hash", sa.String(64), nullable=True))
    op.create_table(
        "sign_in_requests",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("address_hash", sa.String(64), nullable=False),
        sa.Column("client_address", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_sign_in_requests_address", "sign_in_requests", ["address_hash", "created_at"])
    op.create_index("ix_sign_in_requests_client", "sign_in_requests", ["client_address", "created_at"])
    op.create_index("ix_sign_in_requests_created", "sign_in_requests", ["created_at"])


def downgrade() -> None:
    op.drop_table("sign_in_requests")
    with op.batch_alter_table("sign_in_links") as batch:
        batch.drop_column("browser_hash")
    op.drop_table("outbox_mails")
