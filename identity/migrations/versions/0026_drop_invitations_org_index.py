"""Drop `ix_invitations_org_id` (org_id alone, made by 0001): 0025's `ix_invitations_org_email_key` on
(org_id, email_key) leads with org_id, so every read of an org's invitations (their list, the pending
count, the expiry of those due, an org's or a team's deletion) reads it by org_id as it read this one,
and each invitation written kept two indexes where one serves.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_invitations_org_id", table_name="invitations")


def downgrade() -> None:
    op.create_index("ix_invitations_org_id", "invitations", ["org_id"])
