"""SCIM: the team an IdP group mirrors, and OAuth client-credentials clients.

Revision ID: 0004
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

import audit.models

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A plain ADD COLUMN, not a batch table copy: the copy would lose the expression indexes.
        op.execute("ALTER TABLE idp_groups ADD COLUMN team_id VARCHAR(80) "
                   "CONSTRAINT fk_idp_groups_team_id_teams REFERENCES teams (id) ON DELETE SET NULL")
    else:
        op.add_column("idp_groups", sa.Column("team_id", sa.String(length=80), nullable=True))
        op.create_foreign_key("fk_idp_groups_team_id_teams", "idp_groups", "teams", ["team_id"], ["id"],
                              ondelete="SET NULL")
    op.create_table(
        "scim_clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", audit.models.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", audit.models.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.id"], name="fk_scim_clients_org_id_orgs"),
        sa.PrimaryKeyConstraint("id", name="pk_scim_clients"),
        sa.UniqueConstraint("client_id", name="uq_scim_clients_client_id"),
    )
    op.create_index("ix_scim_clients_org_id", "scim_clients", ["org_id"])
    op.create_index("ix_idp_groups_org_team", "idp_groups", ["org_id", "team_id"])


def downgrade() -> None:
    op.drop_index("ix_idp_groups_org_team", table_name="idp_groups")
    op.drop_index("ix_scim_clients_org_id", table_name="scim_clients")
    op.drop_table("scim_clients")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("fk_idp_groups_team_id_teams", "idp_groups", type_="foreignkey")
    op.drop_column("idp_groups", "team_id")
