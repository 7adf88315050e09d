"""A deleted team's revoked API keys and its invitations stay as records, their team unset.

Deleting a team whose keys or invitations referenced it failed on the foreign key: the rows
stay (a revoked key and a past invitation are history an admin may look up) and lose only the
link to the team that is gone; the audit log keeps which team it was.

Revision ID: 0011
Revises: 0010
"""
import warnings

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("api_keys", "invitations")


def upgrade() -> None:
    for table in TABLES:
        # SQLite's batch mode reflects the related tables; their expression indexes are not its concern.
        with warnings.catch_warnings(), op.batch_alter_table(table) as batch:
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            batch.alter_column("team_id", existing_type=sa.String(80), nullable=True)
            batch.drop_constraint(f"fk_{table}_team_id_teams", type_="foreignkey")
            batch.create_foreign_key(f"fk_{table}_team_id_teams", "teams", ["team_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    for table in TABLES:
        with warnings.catch_warnings(), op.batch_alter_table(table) as batch:
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            batch.drop_constraint(f"fk_{table}_team_id_teams", type_="foreignkey")
            batch.create_foreign_key(f"fk_{table}_team_id_teams", "teams", ["team_id"], ["id"])
            batch.alter_column("team_id", existing_type=sa.String(80), nullable=False)
