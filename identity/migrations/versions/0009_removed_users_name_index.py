"""Index removed users (tombstones) by userName: "was this userName removed?" probes, not scans.

A first SAML sign-in asks it before JIT provisioning; without this index it read every user of
the org. Tombstones are few, so the index is small and only deletions write to it.

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    removed = sa.text("deleted_at IS NOT NULL")
    op.create_index("ix_users_org_removed_user_name", "users", ["org_id", sa.text("lower(user_name)")],
                    sqlite_where=removed, postgresql_where=removed)


def downgrade() -> None:
    op.drop_index("ix_users_org_removed_user_name", table_name="users")
