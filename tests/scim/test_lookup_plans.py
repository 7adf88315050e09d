"""Every lookup an IdP sends reads its own index, whatever the planner believes (issue 19, "Scale").

At 1,000,000 users `userName eq` once took 347 ms: the planner, unsure how many users the filter
matched, walked the org's list-order index (ORDER BY created_at, id LIMIT 100) testing every
user. Here a generated org of 30,000 users and 10,000 groups (bulk SQL, a few seconds) is
analyzed, then each lookup's real statement (scim.listing's) runs under EXPLAIN ANALYZE: it must
read the attribute's index and touch a handful of rows, both with the statistics ANALYZE gathered
and with statistics that misjudge it as the planner did at 1,000,000 users (then it had none for
the userName expression and took the default: 0.5% of the rows match any value; n_distinct = 200
says the same here). The fence in scim.listing is what keeps the second case on the index: without
it, externalId and the email lookups walk all 30,000 users.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Select, text

from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from scim import listing
from tests.pgcluster import PostgresCluster

USERS, GROUPS = 30_000, 10_000

# (filter, the index it must read, which list)
LOOKUPS = [
    ('userName eq "USER20417@Plan.Test"', "uq_users_org_user_name", "users"),
    ('externalId eq "ext-20417"', "ix_users_org_live_external_id", "users"),
    ('emails[type eq "work"].value eq "user20417@plan.test"', "ix_user_emails_value", "users"),
    ('emails.value eq "user20417@plan.test"', "ix_user_emails_value", "users"),
    ('emails eq "user20417@plan.test"', "ix_user_emails_value", "users"),
    ('userName eq "user20417@plan.test" and active eq true', "uq_users_org_user_name", "users"),
    ('displayName eq "Group 7041"', "uq_idp_groups_org_name", "groups"),
    ('externalId eq "gext-7041"', "ix_idp_groups_org_external_id", "groups"),
]

GENERATE = [
    """INSERT INTO users (id, org_id, user_name, user_name_key, email, external_id, display_name, active,
                          has_seat, source, attributes, created_at, updated_at, version)
       SELECT md5('u' || i)::uuid::text, :org, 'user' || i || '@plan.test', 'user' || i || '@plan.test',
              'user' || i || '@plan.test', 'ext-' || i, 'User ' || i, true, true, 'scim', '{}',
              timestamp '2026-01-01' + i * interval '1 second', timestamp '2026-01-01', 1
       FROM generate_series(1, :users) AS i""",
    """INSERT INTO user_emails (org_id, user_id, value, type, "primary")
       SELECT :org, md5('u' || i)::uuid::text, 'user' || i || '@plan.test', 'work', true
       FROM generate_series(1, :users) AS i""",
    """INSERT INTO idp_groups (id, org_id, display_name, display_name_key, external_id, attributes, created_at,
                              updated_at, version)
       SELECT md5('g' || i)::uuid::text, :org, 'Group ' || i, 'group ' || i, 'gext-' || i, '{}',
              timestamp '2026-01-01' + i * interval '1 second', timestamp '2026-01-01', 1
       FROM generate_series(1, :groups) AS i""",
]
# What the planner is told when it misjudges: each value matches 0.5% of the rows (its default guess).
MISJUDGED = [f"ALTER TABLE {table} ALTER COLUMN {column} SET (n_distinct = 20)" for table, column in
             (("users", "user_name_key"), ("users", "external_id"), ("user_emails", "value"),
              ("idp_groups", "external_id"))]
_made = iter(range(1_000_000))


@pytest.fixture(scope="module", params=["analyzed", "misjudged"])
def big_org(request: pytest.FixtureRequest, pg_cluster: PostgresCluster) -> Iterator[tuple[Database, str]]:
    """A PostgreSQL database with one big generated org, analyzed; made once per kind of statistics."""
    db = Database(pg_cluster.create_database(f"plans_{next(_made)}", template="template_identity"))
    with db.transaction() as session:
        org_id = orgs.create_org(session, system_actor("tests"), "Big", owner_email="owner@big.test").org.id
    with db.begin() as conn:
        for statement in GENERATE:
            conn.execute(text(statement), {"org": org_id, "users": USERS, "groups": GROUPS})
        if request.param == "misjudged":
            for statement in MISJUDGED:
                conn.execute(text(statement))
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    yield db, org_id
    db.dispose()


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _explain(db: Database, stmt: Select[Any]) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        compiled = stmt.compile(conn, compile_kwargs={"literal_binds": True})
        found = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}").scalar()
    plan = found if isinstance(found, list) else json.loads(found)
    return list(_nodes(plan[0]["Plan"]))


@pytest.mark.parametrize(("scim_filter", "index", "kind"), LOOKUPS)
def test_an_idp_lookup_reads_its_index_and_a_handful_of_rows(big_org: tuple[Database, str], scim_filter: str,
                                                            index: str, kind: str) -> None:
    db, org_id = big_org
    query = listing.read_query({"filter": scim_filter})
    stmt = listing.users_page(org_id, query) if kind == "users" else listing.groups_page(org_id, query)
    nodes = _explain(db, stmt)
    described = [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in nodes]
    assert index in {n.get("Index Name") for n in nodes}, described
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], described
    # Rows read and thrown away: a walk over the org shows here as tens of thousands.
    touched = sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
                  + n.get("Rows Removed by Index Recheck", 0) for n in nodes if "Relation Name" in n)
    assert touched <= 10, described
    assert nodes[0]["Actual Rows"] == 1


def test_a_broad_filter_still_walks_the_list_order(big_org: tuple[Database, str]) -> None:
    """`active eq true` matches nearly everyone: reading the first 100 in list order is right for it."""
    db, org_id = big_org
    stmt = listing.users_page(org_id, listing.read_query({"filter": "active eq true", "count": "100"}))
    nodes = _explain(db, stmt)
    assert "ix_users_org_created" in {n.get("Index Name") for n in nodes}
    assert "CTE Scan" not in {n["Node Type"] for n in nodes}


def test_a_deep_page_skips_in_the_index_and_reads_only_its_rows(big_org: tuple[Database, str]) -> None:
    """startIndex 25,000: the skipped users are index entries, never table rows (1.5 s -> 0.35 s at 1,000,000)."""
    db, org_id = big_org
    nodes = _explain(db, listing.users_page(org_id, listing.read_query({"startIndex": "25000", "count": "100"})))
    skipping = [n for n in nodes if n.get("Index Name") == "ix_users_org_created"]
    assert [n["Node Type"] for n in skipping] == ["Index Only Scan"], nodes
    rows = [n for n in nodes if n.get("Relation Name") == "users" and n.get("Index Name") != "ix_users_org_created"]
    assert sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) for n in rows) == 100
    assert nodes[0]["Actual Rows"] == 100


@pytest.mark.parametrize(("scim_filter", "index"), [(f, i) for f, i, kind in LOOKUPS if kind == "users"])
def test_an_idp_lookup_reads_its_index_with_a_plan_for_any_value(big_org: tuple[Database, str], scim_filter: str,
                                                                  index: str) -> None:
    """A user lookup's read runs where PostgreSQL may reuse one plan for every value (Database.looking_up):
    that generic plan, forced here, must read the same index and touch as few rows, with either statistics."""
    from psycopg import ClientCursor
    from sqlalchemy.dialects import postgresql

    db, org_id = big_org
    stmt = listing.users_page(org_id, listing.read_query({"filter": scim_filter}))
    compiled = stmt.compile(dialect=postgresql.psycopg.dialect(paramstyle="numeric_dollar"))
    values = [compiled.params[name] for name in compiled.positiontup or ()]
    with db.lookup_engine.connect() as conn:
        raw = conn.connection.driver_connection
        with ClientCursor(raw) as cursor:
            cursor.execute(f"PREPARE lookup AS {compiled.string}")
            cursor.execute("SET plan_cache_mode = force_generic_plan")
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE lookup({', '.join(['%s'] * len(values))})", values)
            found = cursor.fetchone()[0]  # type: ignore[index]
            cursor.execute("DEALLOCATE lookup")
            cursor.execute("RESET plan_cache_mode")
        conn.rollback()
    nodes = list(_nodes((found if isinstance(found, list) else json.loads(found))[0]["Plan"]))
    described = [(n["Node Type"], n.get("Index Name"), n.get("Actual Rows")) for n in nodes]
    assert any("$" in str(n.get("Index Cond", "")) for n in nodes), nodes  # planned for parameters, not values
    assert index in {n.get("Index Name") for n in nodes}, described
    assert not [n for n in nodes if n["Node Type"] == "Seq Scan"], described
    touched = sum(n.get("Actual Rows", 0) * n.get("Actual Loops", 1) + n.get("Rows Removed by Filter", 0)
                  for n in nodes if "Relation Name" in n)
    assert touched <= 10, described
    assert nodes[0]["Actual Rows"] == 1
