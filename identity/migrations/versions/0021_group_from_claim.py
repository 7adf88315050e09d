"""A group says whether a SAML sign-in's group claim made it (the SCIM create of the IdP's group adopts
only such a group: identity.groups.create_group). Groups made before are not marked: never adopted.

Revision ID: 0021
Revises: 0020
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN, not a batch: on SQLite a batch would copy the table and lose the expression
    # index uq_idp_groups_org_name (lower(display_name)), which reflection cannot read back.
    op.add_column("idp_groups", sa.Column("from_claim", sa.Boolean(), nullable=False,
                                          server_default=sa.text("false")))


def downgrade() -> None:
    op.execute("ALTER TABLE idp_groups DROP COLUMN from_claim")  # SQLite 3.35+ and PostgreSQL alike
