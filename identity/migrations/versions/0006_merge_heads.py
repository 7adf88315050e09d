"""Join the audit, SAML and SCIM branches of the schema into one line again.

Revision ID: 0006
Revises: 0002, 0003, 0005
"""

revision = "0006"
down_revision = ("0002", "0003", "0005")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
