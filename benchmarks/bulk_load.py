"""An org of any size on PostgreSQL in minutes: users, emails, grants and groups made by the server.

benchmarks/bench_scim.py seeds PostgreSQL through here (SQLite keeps its multi-row INSERTs):
each table is one `INSERT ... SELECT ... FROM generate_series(...)`, so no row crosses the wire
and nothing runs per row in Python. Rows are what `users.provision_user` and
`group_membership.add_members` write (bench_scim's docstring lists them); user i's id is
`md5('u' || i)` as a UUID, which `user_id(i)` computes the same way in Python. Besides the
benchmark's two groups (made through `identity.groups`, with their mirror teams) it makes `filler`
more groups of `filler_size` members each, with a mirror team and the members' team grants, as
mirrored groups have.

Measured on the project's 2-core machine with other work running: 1,000,000 users, their emails
and grants in about 2 to 3 minutes, most of it index maintenance.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import Connection, text


def user_id(i: int) -> str:
    """The id the loader gives user i (md5('u' || i) as a UUID, as PostgreSQL prints it)."""
    return str(uuid.UUID(hashlib.md5(f"u{i}".encode()).hexdigest()))


NAME = "'user' || i || '@bench.test'"
USERS = f"""
INSERT INTO users (id, org_id, user_name, user_name_key, email, external_id, display_name, given_name,
                   family_name, active, has_seat, source, attributes, created_at, updated_at, deleted_at, version)
SELECT md5('u' || i)::uuid::text, :org, {NAME}, {NAME}, {NAME}, 'ext-' || i, 'Bench User ' || i, 'Bench',
       'User ' || i, true, true, 'scim',
       json_build_object('userName', {NAME}, 'externalId', 'ext-' || i, 'displayName', 'Bench User ' || i,
                         'name', json_build_object('givenName', 'Bench', 'familyName', 'User ' || i),
                         'emails', json_build_array(json_build_object('value', {NAME}, 'type', 'work',
                                                                      'primary', true))),
       CAST(:base AS timestamp) + i * interval '10 milliseconds',
       CAST(:base AS timestamp) + i * interval '10 milliseconds', NULL, 1
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i"""
EMAILS = f"""
INSERT INTO user_emails (org_id, user_id, value, type, "primary", display)
SELECT CAST(:org AS varchar), md5('u' || i)::uuid::text, {NAME}, 'work', true, NULL
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i"""
GRANTS = """
INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)
SELECT CAST(:org AS varchar), md5('u' || i)::uuid::text, team.id, 'member', 'scim', '',
       CAST(:base AS timestamp) + i * interval '10 milliseconds'
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i,
     (VALUES (CAST(NULL AS varchar)), (CAST(:team AS varchar))) AS team (id)"""
# Members of a group made by the service: users first..last, with the team grant its mirror gives.
MEMBERS = """
INSERT INTO idp_group_members (group_id, user_id)
SELECT :group, md5('u' || i)::uuid::text
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i"""
MEMBER_GRANTS = """
INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)
SELECT CAST(:org AS varchar), md5('u' || i)::uuid::text, :team, :role, 'scim', :group, now()
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS i"""
# Filler groups g (1..n), each with its mirror team and members: `size` users from `offset` on.
FILLER = [
    """INSERT INTO teams (id, org_id, name, name_key, created_at, is_default)
       SELECT 'filler-' || g, :org, 'Filler group ' || g, 'filler group ' || g, now(), false
       FROM generate_series(1, CAST(:n AS integer)) AS g""",
    """INSERT INTO idp_groups (id, org_id, display_name, display_name_key, external_id, team_id, attributes,
                              created_at, updated_at, version)
       SELECT md5('g' || g)::uuid::text, :org, 'Filler group ' || g, 'filler group ' || g, 'filler-ext-' || g,
              'filler-' || g, '{}',
              now(), now(), 1 FROM generate_series(1, CAST(:n AS integer)) AS g""",
    """INSERT INTO idp_group_members (group_id, user_id)
       SELECT md5('g' || g)::uuid::text,
              md5('u' || (CAST(:offset AS integer) + (g * CAST(:size AS integer) + k)
                          % CAST(:users AS integer)))::uuid::text
       FROM generate_series(1, CAST(:n AS integer)) AS g, generate_series(0, CAST(:size AS integer) - 1) AS k""",
    """INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)
       SELECT :org, m.user_id, g.team_id, 'member', 'scim', g.id, now()
       FROM idp_group_members AS m JOIN idp_groups AS g ON g.id = m.group_id WHERE g.team_id LIKE 'filler-%'""",
]
BATCH = 200_000


def load_users(conn: Connection, org_id: str, team_id: str, users: int, base: Any) -> None:
    """Insert users 0..users-1 with their emails, org and Default-team grants, and their seats."""
    for first in range(0, users, BATCH):
        bounds = {"org": org_id, "team": team_id, "base": base, "first": first, "last": min(users, first + BATCH) - 1}
        for statement in (USERS, EMAILS, GRANTS):
            conn.execute(text(statement), bounds)
    conn.execute(text("UPDATE orgs SET seats_used = seats_used + :n WHERE id = :org"), {"n": users, "org": org_id})


def load_members(conn: Connection, org_id: str, group_id: str, first: int, last: int, grants: Any) -> None:
    """Put users first..last into a group made by the service, with the grants its mapping gives."""
    conn.execute(text(MEMBERS), {"group": group_id, "first": first, "last": last})
    for team, role in ((grants.team_id, grants.team_role), (None, grants.org_role)):
        if role is not None:
            conn.execute(text(MEMBER_GRANTS), {"org": org_id, "team": team, "role": getattr(role, "value", role),
                                               "group": group_id, "first": first, "last": last})


def load_filler_groups(conn: Connection, org_id: str, groups: int, size: int, offset: int, users: int) -> None:
    """Make `groups` more groups of `size` members (users from `offset` on, wrapping), with mirror teams."""
    if groups <= 0:
        return
    for statement in FILLER:
        conn.execute(text(statement), {"org": org_id, "n": groups, "size": size, "offset": offset,
                                       "users": users - offset})
