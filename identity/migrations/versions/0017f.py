"""Placeholder for the 2026-12-06 session's work (part f); filled in by the part that needs a schema change.

Revision ID: 0017f
Revises: 0016
"""

revision = "0017f"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
