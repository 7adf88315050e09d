"""The IdP setup page's provisioning status (issue 17, console-admin): `provisioning_events`, the newest
SCIM requests and SAML sign-ins of each org, refused ones with their reason (identity.provisioning_log).

Revision ID: 0017b
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0017b"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provisioning_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("org_id", sa.String(36), nullable=False),
        sa.Column("protocol", sa.String(8), nullable=False),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("occurred_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("credential", sa.String(200), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_provisioning_events"),
    )
    op.create_index("ix_provisioning_events_org", "provisioning_events", ["org_id", "protocol", "outcome", "id"])


def downgrade() -> None:
    op.drop_index("ix_provisioning_events_org", table_name="provisioning_events")
    op.drop_table("provisioning_events")
