"""Teams keep their name's key (identity.names.name_key), so that a team's name compares the same way
on SQLite and PostgreSQL, as a group's display name does since 0030: a mirrored group `Équipe` adopts
the team `ÉQUIPE` (SQLite's lower(), and PostgreSQL's under the C collation, leave `É` and `İ` as they
are, where Python's lowercases them), and a second team of that name is refused.

- `teams.name_key`: name_key(name), computed in Python for every team; the unique index
  `uq_teams_org_name` is on (org_id, name_key) instead of lower(name).

Two teams of one org whose names were distinct under lower() but are one name under the key
(`ÉQUIPE` and `équipe`, `Straße` and `STRASSE`) stop the upgrade, naming them: rename one (the
console or the admin API) and upgrade again. The check runs before any change.

NOT NULL from the start: SQLite adds such a column only with a default, which PostgreSQL then drops
(as 0025, 0030).

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

BATCH = 5000
TEAMS = sa.table("teams", sa.column("id"), sa.column("org_id"), sa.column("name"), sa.column("name_key"))


def name_key(value: str) -> str:
    # identity.names.name_key as it stands at this revision (a migration does not follow later code).
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())


def upgrade() -> None:
    _refuse_clashes()
    op.add_column("teams", sa.Column("name_key", sa.String(1024), nullable=False, server_default=""))
    _backfill()
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("teams", "name_key", existing_type=sa.String(1024), server_default=None)
    op.drop_index("uq_teams_org_name", table_name="teams")
    op.create_index("uq_teams_org_name", "teams", ["org_id", "name_key"], unique=True)


def _refuse_clashes() -> None:
    """Stop before any change when two teams of one org are one name under the key."""
    seen: dict[tuple[str, str], list[str]] = defaultdict(list)
    for org_id, name in op.get_bind().execute(sa.select(TEAMS.c.org_id, TEAMS.c.name)):
        seen[(org_id, name_key(name))].append(name)
    clashes = sorted(sorted(names) for names in seen.values() if len(names) > 1)
    if clashes:
        raise RuntimeError("teams: each of these lists names one team twice once compared by "
                           f"identity.names.name_key; rename all but one of each and upgrade again: {clashes}")


def _backfill() -> None:
    """Key every team's name in Python, by id in batches."""
    bind, last = op.get_bind(), ""
    update = TEAMS.update().where(TEAMS.c.id == sa.bindparam("rid")).values(name_key=sa.bindparam("key"))
    while True:
        batch = bind.execute(sa.select(TEAMS.c.id, TEAMS.c.name).where(TEAMS.c.id > last)
                             .order_by(TEAMS.c.id).limit(BATCH)).all()
        if not batch:
            return
        bind.execute(update, [{"rid": rid, "key": name_key(name)} for rid, name in batch])
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("uq_teams_org_name", table_name="teams")
    op.execute("ALTER TABLE teams DROP COLUMN name_key")  # SQLite 3.35+ and PostgreSQL alike
    op.create_index("uq_teams_org_name", "teams", ["org_id", sa.text("lower(name)")], unique=True)
