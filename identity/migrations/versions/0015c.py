"""Placeholder for issue 16 work (part c); filled in by the part that needs a schema change.

Revision ID: 0015c
Revises: 0014
"""

revision = "0015c"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
