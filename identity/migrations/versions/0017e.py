"""Placeholder for the 2026-12-06 session's work (part e); filled in by the part that needs a schema change.

Revision ID: 0017e
Revises: 0016
"""

revision = "0017e"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
