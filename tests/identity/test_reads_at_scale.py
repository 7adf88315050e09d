"""Reads that must not grow with the org: "no query that grows with org size on a hot path".

From a hostile review (the scale review). Each test here is a hot path (the team list and a team's
page, a wallet's and a member's spend, the audit log page filtered) whose statements or rows read
must not grow with the number of members, events or ledger rows of the org. Proofs are counts, not timings: the statements a request sends at a small
and at a large org (tests/statements.py), or the rows a statement reads under EXPLAIN ANALYZE on
PostgreSQL with the org generated in SQL (as tests/scim/test_lookup_plans.py does).

Each test failed on the code the review read (main 776a29f), for the reason its docstring gives.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import insert, text

from audit import Actor
from audit.actor import system_actor
from audit.models import AuditEvent
from identity import keys, orgs
from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_api_sessions import sign_in
from tests.pgcluster import PostgresCluster
from tests.statements import statements


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def admin_key(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """The owner's admin API key."""
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin", "inference"])
    return {"Authorization": f"Bearer {key.secret}"}


def count_sent(db: Database, client: FlaskClient, path: str, headers: dict[str, str]) -> list[str]:
    """The statements of a GET, after one unrecorded GET (a key's or session's last-used time is written
    at most once a minute: the counted request writes neither)."""
    client.get(path, headers=headers)
    with statements(db) as sent:
        response = client.get(path, headers=headers)
        assert response.status_code == 200, response.data[:500]
    return list(sent)


# --- the audit log page, filtered: one statement per 2,000 events of the whole chain --------------------------

def seed_events(db: Database, org_id: str, count: int) -> None:
    """Append `count` events to the org's chain (bulk INSERT; the head moved past them), none of them about
    the org's owner. Hashes are not checked by a read."""
    with db.begin() as conn:
        head = conn.execute(text("SELECT seq FROM audit_heads WHERE org_id = :org"), {"org": org_id}).scalar_one()
        start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        rows = [{"id": str(uuid.uuid4()), "org_id": org_id, "seq": head + i + 1,
                 "occurred_at": start + dt.timedelta(microseconds=i), "actor_type": "system", "actor_id": "tests",
                 "actor_display": "tests", "action": "user.updated", "target_type": "user",
                 "target_id": f"other-{i % 97}", "target_display": "someone", "changes": {}, "outcome": "success",
                 "request_id": None, "ip": None, "user_agent": None, "prev_hash": "0" * 64, "hash": "0" * 64}
                for i in range(count)]
        conn.execute(insert(AuditEvent.__table__), rows)
        conn.execute(text("UPDATE audit_heads SET seq = :seq, last_at = :at WHERE org_id = :org"),
                     {"seq": head + count, "at": rows[-1]["occurred_at"].replace(tzinfo=None), "org": org_id})


def _audit_reads(sent: list[str]) -> int:
    return sum(1 for s in sent if s == "SELECT audit_events")


@pytest.mark.parametrize("path", ["/console/audit?target={target}", "/api/v1/orgs/acme/audit-events?target={target}"])
def test_a_filtered_audit_page_reads_as_many_times_at_2000_or_20000_events(
        db: Database, acme: NewOrg, client: FlaskClient, admin_key: dict[str, str], path: str) -> None:
    """The audit log page filtered to one member ("only these" next to a target, or ?target= through
    the API): audit.events.read_page_newest / read_page walk the org's whole chain in windows of 2,000
    sequence numbers until a page is full, one SELECT per window. A member with a handful of events
    in an org of 20,000 events costs ten times the statements (and reads every event of the chain),
    where the (org_id, target_id) index could answer it in one."""
    headers = {"Cookie": sign_in(db, acme.owner.id).cookie} if path.startswith("/console") else admin_key
    url = path.format(target=acme.owner.id)
    seed_events(db, acme.org.id, 2_000)
    small = _audit_reads(count_sent(db, client, url, headers))
    seed_events(db, acme.org.id, 18_000)
    large = _audit_reads(count_sent(db, client, url, headers))
    assert large == small, (small, large)


# --- PostgreSQL, a big generated org: the rows each statement of a read touches (EXPLAIN ANALYZE) ----------------

BIG_USERS = 20_000
USAGE_ROWS = 60_000  # the org's ledger: usage rows of all its members (3 per member this period)
BIG_GENERATE = [
    """INSERT INTO users (id, org_id, user_name, user_name_key, email, active, has_seat, source, attributes,
                          created_at, updated_at, version)
       SELECT md5('u' || i)::uuid::text, :org, 'user' || i || '@big.test', 'user' || i || '@big.test',
              'user' || i || '@big.test', true, true, 'scim', '{}',
              timestamp '2026-01-01' + i * interval '1 second', timestamp '2026-01-01', 1
       FROM generate_series(1, :users) AS i""",
    """INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at)
       SELECT :org, md5('u' || i)::uuid::text, t.team, 'member', 'scim', '', timestamp '2026-01-01'
       FROM generate_series(1, :users) AS i, (VALUES (NULL), (:team)) AS t(team)""",
    """INSERT INTO api_keys (id, org_id, team_id, user_id, name, prefix, secret_hash, scopes, status, created_at)
       SELECT md5('k' || i)::uuid::text, :org, :team, md5('u' || i)::uuid::text, 'key ' || i, 'key_b' || i,
              repeat('0', 64), '["inference"]', 'active', timestamp '2026-01-01'
       FROM generate_series(1, :users) AS i""",
    """INSERT INTO wallet_entries (org_id, team_id, kind, amount_micros, cost_micros, discount_percent, key_id,
                                   user_id, model, request_id, period_start, actor_type, actor_id, created_at)
       SELECT :org, :team, 'usage', -1000, 1000, 0, md5('k' || (i % :users + 1))::uuid::text,
              md5('u' || (i % :users + 1))::uuid::text, 'm', 'r' || i, :period, 'system', 'gw', :period
       FROM generate_series(1, :usage) AS i""",
    # the usage totals each debit keeps beside its rows (identity.usage), as migration 0020 fills them
    *(f"""INSERT INTO usage_totals (team_id, period_start, subject_type, subject_id, org_id, spend_micros, cost_micros,
                                   requests)
          SELECT team_id, period_start, '{kind}', {column}, min(org_id), -sum(amount_micros), sum(cost_micros), count(*)
          FROM wallet_entries WHERE org_id = :org AND kind = 'usage' GROUP BY team_id, period_start, {column}"""
      for kind, column in (("key", "key_id"), ("member", "user_id"))),
]
_made = iter(range(1_000_000))


class Big:
    def __init__(self, db: Database, org: NewOrg) -> None:
        self.db, self.org = db, org
        self.owner = Actor(type="user", id=org.owner.id, display="owner", org_id=org.org.id, role="owner")
        self.member_id = str(uuid.UUID(hex=hashlib.md5(b"u7").hexdigest()))


@pytest.fixture(scope="module")
def big(pg_cluster: PostgresCluster) -> Iterator[Big]:
    """An org of 20,000 members (each in Default, each with a key) and 60,000 usage rows, analyzed."""
    from audit import clock
    from identity.wallet_periods import period_at

    db = Database(pg_cluster.create_database(f"scale_{next(_made)}", template="template_identity"))
    with db.transaction() as session:
        org = orgs.create_org(session, system_actor("tests"), "Big", owner_email="owner@big.test")
    period = period_at(org.org.created_at, clock.now())[0].replace(tzinfo=None)
    with db.begin() as conn:
        for statement in BIG_GENERATE:
            conn.execute(text(statement), {"org": org.org.id, "team": org.default_team_id, "users": BIG_USERS,
                                           "usage": USAGE_ROWS, "period": period})
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    yield Big(db, org)
    db.dispose()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def rows_touched(db: Database, work: Any) -> tuple[int, list[tuple[str, int, list[str]]]]:
    """Run `work(session)` in a read transaction, then EXPLAIN ANALYZE each SELECT it sent with its own
    parameters: return the rows (and index entries) read from tables, in all, and per statement."""
    from sqlalchemy import event

    sent: list[tuple[str, Any]] = []

    def collect(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", collect)
    try:
        with db.reading() as session:
            work(session)
    finally:
        event.remove(db.engine, "before_cursor_execute", collect)
    total, each = 0, []
    with db.engine.connect() as conn:
        for statement, parameters in sent:
            found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()
            plan = found if isinstance(found, list) else json.loads(found)
            nodes = list(_nodes(plan[0]["Plan"]))
            touched = sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
                          + n.get("Rows Removed by Index Recheck", 0) for n in nodes if "Relation Name" in n)
            total += touched
            each.append((statement.split("FROM")[1][:60] if "FROM" in statement else statement[:60], touched,
                         [f"{n['Node Type']} {n.get('Index Name') or n.get('Relation Name') or ''}" for n in nodes]))
        conn.rollback()
    return total, each


PAGE_BUDGET = 1_000  # rows a page of 100 (with its few lookups) may read; the org has 20,000 members


def test_a_members_spend_page_reads_only_that_members_ledger_rows(big: Big) -> None:
    """/console/members/<id>/spend and GET .../members/<id>/spend (identity.spend.member_spend) filter
    wallet_entries by user_id, but no index starts with user_id: PostgreSQL reads the org's whole
    ledger (every member's usage, every period) to find one member's 3 rows."""
    from identity import spend
    total, each = rows_touched(big.db, lambda s: spend.member_spend(s, big.owner, big.org.org.id, big.member_id))
    assert total <= 100, each


def test_a_wallet_page_reads_a_page_not_the_periods_whole_ledger(big: Big) -> None:
    """/console/teams/<id>/wallet and GET .../wallet/spend?by=key|member (identity.spend.spend): spend
    per key and per member is a GROUP BY over every usage row of the team this period, on every
    view: 60,000 ledger rows here; a busy team writes one per model request."""
    from identity import spend
    total, each = rows_touched(big.db, lambda s: spend.spend(s, big.owner, big.org.org.id, big.org.default_team_id,
                                                             by="key"))
    assert total <= PAGE_BUDGET * 20, each  # the 20,000 keys' own rows at most: not the 60,000 usage rows


def test_the_team_list_reads_a_page_of_teams_not_every_member(big: Big) -> None:
    """GET /api/v1/orgs/<org>/teams and /console/teams (identity.directory.team_page): each team's
    member count is a count(DISTINCT user_id) over all its grants joined to users, on every view:
    the Default team holds every member, so the list reads the whole org (20,000 grants and users)."""
    from identity import directory
    total, each = rows_touched(big.db, lambda s: directory.team_page(s, big.owner, big.org.org.id, limit=100))
    assert total <= PAGE_BUDGET, each


def test_the_team_list_counts_a_small_team_along_its_own_index(big: Big) -> None:
    """Beside the Default team (everyone), a team of 5: a count planned once for every team (a correlated
    subquery) walked the whole grants table in id order for the small one, as it does for Default."""
    from identity import directory
    with big.db.begin() as conn:
        conn.execute(text("INSERT INTO teams (id, org_id, name, name_key, created_at, is_default) VALUES "
                          "('small-1', :org, 'Small', 'small', timestamp '2026-01-02', false) ON CONFLICT DO NOTHING"),
                     {"org": big.org.org.id})
        conn.execute(text("INSERT INTO role_grants (org_id, user_id, team_id, role, source, source_ref, created_at) "
                          "SELECT :org, md5('u' || i)::uuid::text, 'small-1', 'member', 'manual', '', "
                          "timestamp '2026-01-01' FROM generate_series(1, 20000, 4000) AS i "
                          "WHERE NOT EXISTS (SELECT 1 FROM role_grants WHERE team_id = 'small-1')"),
                     {"org": big.org.org.id})
        conn.execute(text("ANALYZE role_grants"))
    total, each = rows_touched(big.db, lambda s: directory.team_page(s, big.owner, big.org.org.id, limit=100))
    assert total <= PAGE_BUDGET, each


def test_a_team_page_reads_its_page_of_members_not_the_whole_team(big: Big) -> None:
    """GET /api/v1/orgs/<org>/teams/<id> and /console/teams?team=<id> (directory.get_team_detail):
    the member count reads every grant of the team, and the page of member ids is a GROUP BY
    user_id ... ORDER BY user_id LIMIT over ix_role_grants_team (team_id only): every grant of the
    team is read and sorted for each page of 100."""
    from identity import directory
    total, each = rows_touched(big.db, lambda s: directory.get_team_detail(
        s, big.owner, big.org.org.id, big.org.default_team_id, limit=100))
    assert total <= PAGE_BUDGET, each


# --- a team's count and pages: exact up to the cap, each member once --------------------------------------------

def _seed_team(db: Database, org: NewOrg, team_id: str, count: int, *, start: int = 0, twice: bool = True) -> list[str]:
    """`count` live members of `team_id`, every other one with a second grant there (a group's beside the manual one)."""
    from sqlalchemy import insert

    from identity.models import RoleGrant, User
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids = [str(uuid.UUID(int=start + i + 1)) for i in range(count)]
    with db.begin() as conn:
        conn.execute(insert(User.__table__), [
            {"id": uid, "org_id": org.org.id, "user_name": f"t{start + i}@acme.test", "user_name_key": f"t{start + i}@acme.test",
             "email": None, "active": True, "has_seat": False, "source": "scim", "attributes": {}, "created_at": moment,
             "updated_at": moment, "version": 1} for i, uid in enumerate(ids)])
        conn.execute(insert(RoleGrant.__table__), [
            {"org_id": org.org.id, "user_id": uid, "team_id": team_id, "role": role, "source": source, "source_ref": ref,
             "created_at": moment} for i, uid in enumerate(ids)
            for role, source, ref in (("member", "manual", ""), ("admin", "scim", "g1"))[:2 if twice and i % 2 else 1]])
    return ids


def test_a_team_count_is_exact_up_to_the_cap_and_says_more_past_it(db: Database, acme: NewOrg, system: Actor) -> None:
    from identity import directory, teams, users
    from identity.directory import MEMBER_COUNT_CAP
    owner = Actor(type="user", id=acme.owner.id, display="owner", org_id=acme.org.id, role="owner")
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Big").id

    def counted() -> set[tuple[int, bool]]:
        with db.reading() as session:
            listed = {s.team.id: s for s in directory.team_page(session, owner, acme.org.id, limit=100).teams}[team]
            detail = directory.get_team_detail(session, owner, acme.org.id, team, limit=1).summary
        return {(listed.member_count, listed.member_count_exact), (detail.member_count, detail.member_count_exact)}

    people = _seed_team(db, acme, team, MEMBER_COUNT_CAP)
    assert counted() == {(MEMBER_COUNT_CAP, True)}  # members with two grants counted once
    more = _seed_team(db, acme, team, 1, start=MEMBER_COUNT_CAP)
    assert counted() == {(MEMBER_COUNT_CAP, False)}  # "100+"
    with db.transaction() as session:  # a deactivated member keeps their grants but is not counted
        users.deactivate_user(session, system, acme.org.id, more[0])
    assert counted() == {(MEMBER_COUNT_CAP, True)}
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, people[0])
    assert counted() == {(MEMBER_COUNT_CAP - 1, True)}

    seen, after = [], ""
    while True:
        with db.reading() as session:
            page = directory.get_team_detail(session, owner, acme.org.id, team, limit=7, after=after)
        seen += [m.user_id for m in page.members]
        if page.next is None:
            break
        after = page.next
    assert seen == [*people, *more]  # each member once (the deactivated too), in the order they joined


@pytest.mark.parametrize(("filters", "size"), [({"target_id": "other-3"}, 2), ({"actor_id": "tests"}, 45),
                                               ({"actions": ("user.updated",)}, 45),
                                               ({"target_id": "other-3", "outcome": "success"}, 2)])
def test_a_keyed_audit_page_is_the_windowed_page(db: Database, acme: NewOrg, monkeypatch: pytest.MonkeyPatch,
                                                 filters: dict[str, Any], size: int) -> None:
    """Read along the filter's index (audit.events.keyed), pages hold the same events, cursors and ends as
    the windows of the chain did, both ways, within a closed time range too. Pages of `size` events: a
    filter most events match walks in pages of 45 (11 pages a way, not 250), a rare one in pages of 2."""
    from audit import events
    seed_events(db, acme.org.id, 500)

    def walk(newest: bool, until: dt.datetime | None) -> list[tuple[list[int], int, bool]]:
        pages, after, before = [], 0, None
        for _ in range(400):
            selection = events.Selection(acme.org.id, after_seq=after, until=until, **filters)
            with db.reading() as session:
                page = (events.read_page_newest(session, selection, size, before) if newest
                        else events.read_page(session, selection, size))
            pages.append(([int(r.seq) for r in page.rows], page.position, page.ended))
            if not page.rows or page.ended:
                return pages
            after, before = (after, page.position) if newest else (page.position, None)
        return pages

    with db.reading() as session:
        middle = session.scalar(text("SELECT occurred_at FROM audit_events WHERE org_id = :o ORDER BY seq "
                                     "LIMIT 1 OFFSET 250"), {"o": acme.org.id})
    until = dt.datetime.fromisoformat(str(middle)).replace(tzinfo=dt.UTC)
    assert events.keyed(events.Selection(acme.org.id, **filters))
    keyed = {(newest, bound): walk(newest, bound) for newest in (True, False) for bound in (None, until)}
    monkeypatch.setattr(events, "keyed", lambda selection: False)
    windowed = {(newest, bound): walk(newest, bound) for newest in (True, False) for bound in (None, until)}
    assert keyed == windowed
    assert all(len(pages) >= 2 for pages in keyed.values())
