"""A group remembers the rule its members' grants come from (identity.group_rules.governing_rule), so that
a renamed IdP group keeps its team (DESIGN.md 3.3). Existing groups are pinned to the rule that
governs them now (the rule of their own immutable id, then name-only rules, then for a group without
an id a rule naming its name and an id; the oldest first).

Revision ID: 0023
Revises: 0022
"""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# One statement per rank, best first, each pinning the groups still unpinned (the ranks' order
# kept out of the subquery's ORDER BY: SQLite resolves no outer column there).
RANKS = (
    "m.group_external_id = idp_groups.external_id",
    "m.group_external_id IS NULL AND lower(m.group_display_name) = lower(idp_groups.display_name)",
    "idp_groups.external_id IS NULL AND lower(m.group_display_name) = lower(idp_groups.display_name)",
)
PIN = """
UPDATE idp_groups SET mapping_id = (
    SELECT m.id FROM group_mappings m WHERE m.org_id = idp_groups.org_id AND {rank}
    ORDER BY m.created_at, m.id LIMIT 1)
WHERE mapping_id IS NULL
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A plain ADD COLUMN, not a batch table copy: the copy would lose the expression indexes.
        op.execute("ALTER TABLE idp_groups ADD COLUMN mapping_id VARCHAR(36) CONSTRAINT "
                   "fk_idp_groups_mapping_id_group_mappings REFERENCES group_mappings (id) ON DELETE SET NULL")
    else:
        op.add_column("idp_groups", sa.Column("mapping_id", sa.String(length=36), nullable=True))
        op.create_foreign_key("fk_idp_groups_mapping_id_group_mappings", "idp_groups", "group_mappings",
                              ["mapping_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_idp_groups_org_mapping", "idp_groups", ["org_id", "mapping_id"])
    for rank in RANKS:
        op.execute(PIN.format(rank=rank))


def downgrade() -> None:
    op.drop_index("ix_idp_groups_org_mapping", table_name="idp_groups")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("fk_idp_groups_mapping_id_group_mappings", "idp_groups", type_="foreignkey")
    op.drop_column("idp_groups", "mapping_id")
