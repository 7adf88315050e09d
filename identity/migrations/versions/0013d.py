"""Placeholder for issue 14 work (part d); filled in by the part that needs a schema change.

Revision ID: 0013d
Revises: 0012
"""

revision = "0013d"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
