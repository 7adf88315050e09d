"""Join the schema changes of the console, wallets and interop work (issues 16-19) into one line.

Revision ID: 0018
Revises: 0017a, 0017b, 0017c, 0017d, 0017e, 0017f
"""

revision = "0018"
down_revision = ("0017a", "0017b", "0017c", "0017d", "0017e", "0017f")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
