"""Join the four schema changes of the trust work (audit, SAML identities, SP keys, request ids) into one line.

Revision ID: 0014
Revises: 0013a, 0013b, 0013c, 0013d
"""

revision = "0014"
down_revision = ("0013a", "0013b", "0013c", "0013d")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
