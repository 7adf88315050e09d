"""Index role grants by the group that gave them: leaving a group deletes exactly those.

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_role_grants_source_ref", "role_grants", ["source_ref", "user_id"])


def downgrade() -> None:
    op.drop_index("ix_role_grants_source_ref", table_name="role_grants")
