"""Placeholder for the 2026-12-06 session's work (part d); filled in by the part that needs a schema change.

Revision ID: 0017d
Revises: 0016
"""

revision = "0017d"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
