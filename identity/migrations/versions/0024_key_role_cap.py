"""A key made for its holder by someone else carries a role cap (DESIGN.md 3.2): it acts at most at the
holder's role then, so that promoting the holder does not lift a key whose secret its maker holds.

- `api_keys.role_cap`: NULL (no cap) for the keys their holder made, service keys and the operator's.
- Existing personal keys made by another person (a signed-in user, or a key of another holder) are
  capped at their holder's org role now (the org's default role when no grant gives one): their
  role then is not recorded, so this stops later promotions only. A key its holder (or the
  operator) rotated keeps its predecessor's cap, as identity.keys does from now on.

Plain ADD COLUMN, not a batch: api_keys has no expression index to lose, and a batch would copy it.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

BATCH = 5000
# identity.roles' order as it stands at this revision (a migration does not follow later code).
RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
KEYS = sa.table("api_keys", sa.column("id"), sa.column("org_id"), sa.column("user_id"), sa.column("rotated_to"),
                sa.column("created_by_type"), sa.column("created_by_id"), sa.column("role_cap"))
GRANTS = sa.table("role_grants", sa.column("user_id"), sa.column("team_id"), sa.column("role"))
ORGS = sa.table("orgs", sa.column("id"), sa.column("default_role"))


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("role_cap", sa.String(16), nullable=True))
    caps = _caps(op.get_bind())
    update = KEYS.update().where(KEYS.c.id == sa.bindparam("kid")).values(role_cap=sa.bindparam("cap"))
    rows = [{"kid": key_id, "cap": cap} for key_id, cap in sorted(caps.items())]
    for start in range(0, len(rows), BATCH):
        op.get_bind().execute(update, rows[start:start + BATCH])


def _caps(bind: sa.Connection) -> dict[str, str]:
    """Return {key id: its cap} for the personal keys that get one, as identity.keys._role_cap would have
    given them: made by another person, the holder's role (now); made by the holder or the operator, a
    rotation's predecessor's cap; made through a key, never above that key's cap."""
    keys = {key.id: key for key in bind.execute(
        sa.select(KEYS.c.id, KEYS.c.org_id, KEYS.c.user_id, KEYS.c.rotated_to, KEYS.c.created_by_type,
                  KEYS.c.created_by_id).where(KEYS.c.user_id.is_not(None)))}
    predecessor = {key.rotated_to: key.id for key in keys.values() if key.rotated_to is not None}
    roles, defaults = _org_roles(bind), dict(bind.execute(sa.select(ORGS.c.id, ORGS.c.default_role)).all())
    caps: dict[str, str | None] = {}
    for first in keys:
        stack, pending = [first], {first}
        while stack and first not in caps:  # depth first, no recursion: a key rotated daily makes long chains
            key = keys[stack[-1]]
            maker = keys.get(key.created_by_id) if key.created_by_type == "api_key" else None
            other = (key.created_by_type == "user" and key.created_by_id != key.user_id) or (
                maker is not None and maker.user_id != key.user_id)
            parents = [parent for parent in ((None if other else predecessor.get(key.id)),
                                             maker.id if maker is not None else None)
                       if parent is not None and parent not in caps and parent not in pending]
            if parents:
                stack.extend(parents)
                pending.update(parents)
                continue
            stack.pop()
            bound = (roles.get(key.user_id) or defaults[key.org_id]) if other else caps.get(predecessor.get(key.id, ""))
            caps[key.id] = _lowest(bound, caps.get(maker.id) if maker is not None else None)
    return {key_id: cap for key_id, cap in caps.items() if cap is not None}


def _lowest(*roles: str | None) -> str | None:
    return min((role for role in roles if role is not None), key=RANK.__getitem__, default=None)


def _org_roles(bind: sa.Connection) -> dict[str, str]:
    """Return each user's highest org-wide role."""
    roles: dict[str, str] = {}
    for user_id, role in bind.execute(sa.select(GRANTS.c.user_id, GRANTS.c.role).where(GRANTS.c.team_id.is_(None))):
        if user_id not in roles or RANK[role] > RANK[roles[user_id]]:
            roles[user_id] = role
    return roles


def downgrade() -> None:
    op.execute("ALTER TABLE api_keys DROP COLUMN role_cap")  # SQLite 3.35+ and PostgreSQL alike
