"""Placeholder for issue 16 work (part d); filled in by the part that needs a schema change.

Revision ID: 0015d
Revises: 0014
"""

revision = "0015d"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
