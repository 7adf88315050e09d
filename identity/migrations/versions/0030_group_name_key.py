"""IdP groups keep their display name's key (identity.names.name_key), and mapping rules the key of
the name they give, so that a group's name compares the same way on SQLite and PostgreSQL: a SAML
group claim "Équipe Paris" finds the group "Équipe Paris" (SQLite's lower(), and PostgreSQL's under
the C collation, leave `É` and `İ` as they are, where Python's lowercases them), a second group of
that name is refused, and a rule naming it matches it.

- `idp_groups.display_name_key`: name_key(display_name), computed in Python for every group; the
  unique index `uq_idp_groups_org_name` is on (org_id, display_name_key) instead of lower(display_name).
- `group_mappings.group_display_name_key`: name_key(group_display_name) (NULL without a name);
  `ix_group_mappings_org_name` on (org_id, group_display_name_key).

Two groups of one org whose names were distinct under lower() but are one name under the key
(`ÉQUIPE` and `équipe`, possible on SQLite) stop the upgrade, naming them: rename one (SCIM PATCH or
the IdP) and upgrade again. The check runs before any change.

NOT NULL from the start for the group's key: SQLite adds such a column only with a default, which
PostgreSQL then drops (as 0025).

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

BATCH = 5000
GROUPS = sa.table("idp_groups", sa.column("id"), sa.column("org_id"), sa.column("display_name"),
                  sa.column("display_name_key"))
MAPPINGS = sa.table("group_mappings", sa.column("id"), sa.column("group_display_name"),
                    sa.column("group_display_name_key"))


def name_key(value: str) -> str:
    # identity.names.name_key as it stands at this revision (a migration does not follow later code).
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def upgrade() -> None:
    _refuse_clashes()
    op.add_column("idp_groups", sa.Column("display_name_key", sa.String(1024), nullable=False, server_default=""))
    op.add_column("group_mappings", sa.Column("group_display_name_key", sa.String(1024), nullable=True))
    _backfill(GROUPS, "display_name", "display_name_key")
    _backfill(MAPPINGS, "group_display_name", "group_display_name_key")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("idp_groups", "display_name_key", existing_type=sa.String(1024), server_default=None)
    op.drop_index("uq_idp_groups_org_name", table_name="idp_groups")
    op.create_index("uq_idp_groups_org_name", "idp_groups", ["org_id", "display_name_key"], unique=True)
    op.drop_index("ix_group_mappings_org_name", table_name="group_mappings")
    op.create_index("ix_group_mappings_org_name", "group_mappings", ["org_id", "group_display_name_key"])


def _refuse_clashes() -> None:
    """Stop before any change when two groups of one org are one name under the key."""
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for org_id, name in op.get_bind().execute(sa.select(GROUPS.c.org_id, GROUPS.c.display_name)):
        seen[(org_id, name_key(name))].append(name)
    clashes = sorted(sorted(names) for names in seen.values() if len(names) > 1)
    if clashes:
        raise RuntimeError("idp_groups: each of these lists names one group twice once compared by "
                           f"identity.names.name_key; rename all but one of each and upgrade again: {clashes}")


def _backfill(table: sa.TableClause, name: str, key: str) -> None:
    """Key every row's name in Python, by id in batches."""
    bind, last = op.get_bind(), ""
    update = table.update().where(table.c.id == sa.bindparam("rid")).values({key: sa.bindparam("key")})
    while True:
        batch = bind.execute(sa.select(table.c.id, table.c[name]).where(table.c.id > last)
                             .order_by(table.c.id).limit(BATCH)).all()
        if not batch:
            return
        bind.execute(update, [{"rid": rid, "key": None if value is None else name_key(value)} for rid, value in batch])
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_group_mappings_org_name", table_name="group_mappings")
    op.drop_index("uq_idp_groups_org_name", table_name="idp_groups")
    op.execute("ALTER TABLE group_mappings DROP COLUMN group_display_name_key")  # SQLite 3.35+ and PostgreSQL alike
    op.execute("ALTER TABLE idp_groups DROP COLUMN display_name_key")
    op.create_index("uq_idp_groups_org_name", "idp_groups", ["org_id", sa.text("lower(display_name)")], unique=True)
    op.create_index("ix_group_mappings_org_name", "group_mappings", ["org_id", sa.text("lower(group_display_name)")])
