"""Index live users' externalId alone, as userName is: the lookup's index fits its whole WHERE.

An IdP's `externalId eq` lookup reads live users of one org (`org_id = ?`, `deleted_at IS NULL`,
`external_id = ?`). The old index (org_id, external_id) covered all users, so when the planner did
not know how selective external_id is, the partial userName index (org_id, live users only)
looked as cheap, and a bitmap scan over the org's 1,000,000 users took 0.5 s. Partial on live
users, this index matches every condition of the lookup, so no other index can cost less.
Removed users are never looked up by externalId.

Revision ID: 0017e
Revises: 0016
"""
import sqlalchemy as sa
from alembic import op

revision = "0017e"
down_revision = "0016"
branch_labels = None
depends_on = None

LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_users_org_live_external_id", "users", ["org_id", "external_id"],
                    sqlite_where=LIVE, postgresql_where=LIVE)
    op.drop_index("ix_users_org_external_id", table_name="users")


def downgrade() -> None:
    op.create_index("ix_users_org_external_id", "users", ["org_id", "external_id"])
    op.drop_index("ix_users_org_live_external_id", table_name="users")
