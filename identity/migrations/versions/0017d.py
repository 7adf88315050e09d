"""SAML: the org's `want_assertions_signed` setting, which the SP metadata's WantAssertionsSigned
now states (issue 19, interop part d). Off for every existing connection: what they accepted before.

Revision ID: 0017d
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017d"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("saml_connections", sa.Column("want_assertions_signed", sa.Boolean(), nullable=False,
                                                server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("saml_connections") as batch_op:
        batch_op.drop_column("want_assertions_signed")
