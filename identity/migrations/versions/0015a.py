"""Placeholder for issue 16 work (part a); filled in by the part that needs a schema change.

Revision ID: 0015a
Revises: 0014
"""

revision = "0015a"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
