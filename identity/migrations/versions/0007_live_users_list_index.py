"""List order over live users only: a deep SCIM page walks index entries, not table rows.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_users_org_created", table_name="users")
    live = sa.text("deleted_at IS NULL")
    op.create_index("ix_users_org_created", "users", ["org_id", "created_at", "id"],
                    sqlite_where=live, postgresql_where=live)


def downgrade() -> None:
    op.drop_index("ix_users_org_created", table_name="users")
    op.create_index("ix_users_org_created", "users", ["org_id", "created_at", "id"])
