"""Join the schema changes of the admin API work (issue 16) into one line.

Revision ID: 0016
Revises: 0015a, 0015b, 0015c, 0015d
"""

revision = "0016"
down_revision = ("0015a", "0015b", "0015c", "0015d")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
