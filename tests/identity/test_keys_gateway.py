"""Keys listed, rotated with a grace period, team service keys, and the gateway's key check
(DESIGN.md 3.7; issue 16): over HTTP and the CLI, on both databases."""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from audit import Actor, clock
from audit.models import AuditEvent
from identity import keys, team_deletion, teams, tokens, users
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.cli import main
from identity.web.context import EXTENSION
from tests.factories import actions, provision
from tests.identity.test_every_service_helpers import snapshot_rows
from tests.statements import statements


@dataclass
class Setup:
    gateway: dict[str, str]  # Authorization header of the gateway's credential
    owner_key: str
    owner_key_id: str
    member_key: str
    member_key_id: str
    member_id: str


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def setup(db: Database, system: Actor, acme: NewOrg, runner: CliRunner) -> Setup:
    result = runner.invoke(main, ["gateway", "credential", "create", "--json"])
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout.splitlines()[0])
    assert made["credential"].startswith("gw_") and made["id"]
    member = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    with db.transaction() as session:
        owner = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                    team_id=acme.default_team_id, name="owner", scopes=["admin", "inference"])
        mine = keys.create_api_key(session, system, acme.org.id, user_id=member.id, team_id=acme.default_team_id,
                                   name="bob", scopes=["admin", "inference"])
    return Setup(_bearer(made["credential"]), owner.secret, owner.id, mine.secret, mine.id, member.id)


def _check(client: FlaskClient, setup: Setup, key: str) -> dict:
    response = client.post("/api/v1/keys/verify", json={"key": key}, headers=setup.gateway)
    assert response.status_code == 200, response.data
    assert response.headers["Cache-Control"] == "private, max-age=10"
    return response.get_json()


def test_a_valid_key_answers_who_it_speaks_for(client: FlaskClient, acme: NewOrg, setup: Setup) -> None:
    body = _check(client, setup, setup.member_key)
    budget = body.pop("budget")  # the wallet's answer (DESIGN 3.8; tests/identity/test_wallet_usage.py)
    assert budget["balance_micros"] == 0 and budget["limits"] == [] and budget["remaining_micros"] == 0
    assert body == {"valid": True, "key_id": setup.member_key_id, "kind": "personal",
                    "org": {"id": acme.org.id, "slug": acme.org.slug}, "team_id": acme.default_team_id,
                    "member": {"id": setup.member_id, "userName": "bob@acme.test"}, "role": "member",
                    "team_role": "member", "scopes": ["admin", "inference"]}


@pytest.mark.parametrize("key", ["", "nonsense", "key_000000000000_x", "gw_abc_def"])
def test_an_unknown_key_is_refused_as_unknown(client: FlaskClient, setup: Setup, key: str) -> None:
    assert _check(client, setup, key) == {"valid": False, "reason": "unknown"}


def test_a_wrong_secret_with_a_known_prefix_is_unknown(client: FlaskClient, setup: Setup) -> None:
    prefix = tokens.split_prefix(setup.member_key)
    assert _check(client, setup, f"{prefix}_wrong") == {"valid": False, "reason": "unknown"}


def test_revoked_blocked_and_left_team(client: FlaskClient, db: Database, system: Actor, acme: NewOrg,
                                       setup: Setup) -> None:
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, setup.member_id)
    assert _check(client, setup, setup.member_key) == {"valid": False, "reason": "blocked"}
    with db.transaction() as session:
        users.reactivate_user(session, system, acme.org.id, setup.member_id)
    assert _check(client, setup, setup.member_key)["valid"] is True
    with db.transaction() as session:
        keys.revoke_api_key(session, system, acme.org.id, setup.member_key_id)
    assert _check(client, setup, setup.member_key) == {"valid": False, "reason": "revoked"}


def test_rotation_keeps_the_old_key_for_its_grace_then_expired(client: FlaskClient, db: Database, acme: NewOrg,
                                                                setup: Setup,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = f"/api/v1/orgs/{acme.org.slug}/api-keys/{setup.member_key_id}/rotate"
    response = client.post(path, json={"grace_seconds": 3600}, headers=_bearer(setup.member_key))
    assert response.status_code == 201, response.data
    new = response.get_json()
    assert new["key"] != setup.member_key and new["rotated_from"] == setup.member_key_id
    assert _check(client, setup, setup.member_key)["valid"] is True  # in its grace period
    assert _check(client, setup, new["key"])["key_id"] == new["id"]
    assert client.get("/api/v1/key", headers=_bearer(new["key"])).status_code == 200
    again = client.post(path, json={}, headers=_bearer(setup.member_key))
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    later = clock.now() + dt.timedelta(seconds=3601)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert _check(client, setup, setup.member_key) == {"valid": False, "reason": "expired"}
    assert client.get("/api/v1/key", headers=_bearer(setup.member_key)).status_code == 401
    assert _check(client, setup, new["key"])["valid"] is True
    assert "api_key.rotated" in actions(db, acme.org.id)


def _use(client: FlaskClient, setup: Setup, key_id: str, cost: int, request_id: str) -> dict:
    response = client.post("/api/v1/usage", headers=setup.gateway, json={
        "key_id": key_id, "model": "gpt-x", "cost_micros": cost, "request_id": request_id})
    assert response.status_code in (200, 429), response.data
    return response.get_json()


def test_rotation_keeps_the_keys_spending_limit_spend_and_refusal(client: FlaskClient, db: Database, system: Actor,
                                                                   acme: NewOrg, setup: Setup) -> None:
    admin = provision(db, system, acme.org.id, "ada@acme.test", role="admin")
    with db.transaction() as session:
        service = keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="prod",
                                          scopes=["inference"])
        ada = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                  name="ada", scopes=["admin"])
    wallet, owner = f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}/wallet", _bearer(setup.owner_key)
    assert client.post(f"{wallet}/top-ups", headers=owner,
                       json={"amount_micros": 10_000, "reference": "inv 1"}).status_code == 201
    assert client.put(f"{wallet}/limits/keys/{service.id}", headers=owner, json={"limit_micros": 100}).status_code == 200
    assert _use(client, setup, service.id, 100, "s1")["status"] == "debited"
    assert _use(client, setup, service.id, 1, "s2")["code"] == "spending_limit_reached"
    # An admin may not raise the owner's limit, nor shed it by rotating the key.
    assert client.put(f"{wallet}/limits/keys/{service.id}", headers=_bearer(ada.secret),
                      json={"limit_micros": 10**9}).status_code == 403
    rotate = f"/api/v1/orgs/{acme.org.slug}/api-keys/{{}}/rotate"
    rotated = client.post(rotate.format(service.id), headers=_bearer(ada.secret), json={})
    assert rotated.status_code == 201, rotated.data
    successor = rotated.get_json()
    for key_id, secret in ((successor["id"], successor["key"]), (service.id, service.secret)):  # the old in its grace
        refused = _use(client, setup, key_id, 5_000, f"after {key_id}")
        assert (refused["code"], refused["scope"]) == ("spending_limit_reached", "key")
        assert _check(client, setup, secret)["reason"] == "spending_limit_reached"
    with db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "api_key.rotated")).one()
    assert event.changes["spend_limit"] == {"limit_micros": 100, "spend_micros": 100, "refused": True}
    # The owner raises the successor's limit: the spend of the period went with it.
    assert client.put(f"{wallet}/limits/keys/{successor['id']}", headers=owner,
                      json={"limit_micros": 150}).status_code == 200
    assert _use(client, setup, service.id, 51, "s3")["code"] == "spending_limit_reached"
    assert _use(client, setup, successor["id"], 50, "s4")["remaining_micros"] == 0
    # Its predecessor spends under the same row for its grace: rotating again now would leave it behind.
    again = client.post(rotate.format(successor["id"]), headers=_bearer(ada.secret), json={})
    assert again.status_code == 409, again.data


@pytest.mark.parametrize("grace", [-1, -10**30, 7 * 86400 + 1, 10**30, "60", True, 1.5])
def test_a_bad_grace_period_is_a_precise_400(client: FlaskClient, acme: NewOrg, setup: Setup, grace: object) -> None:
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/api-keys/{setup.member_key_id}/rotate",
                           json={"grace_seconds": grace}, headers=_bearer(setup.member_key))
    assert response.status_code == 400 and response.get_json()["field"] == "grace_seconds"


def test_the_gateway_credential_is_required(client: FlaskClient, setup: Setup) -> None:
    for headers in ({}, _bearer("gw_000000000000_nope"), _bearer(setup.owner_key),
                    {"Authorization": setup.gateway["Authorization"] + "x"}):
        response = client.post("/api/v1/keys/verify", json={"key": setup.member_key}, headers=headers)
        assert response.status_code == 401 and response.content_type == "application/problem+json"


def test_a_revoked_gateway_credential_is_refused(client: FlaskClient, runner: CliRunner, setup: Setup) -> None:
    credential = setup.gateway["Authorization"].split(" ", 1)[1]
    prefix = tokens.split_prefix(credential)
    assert prefix is not None
    assert runner.invoke(main, ["gateway", "credential", "revoke", prefix]).exit_code == 0
    response = client.post("/api/v1/keys/verify", json={"key": setup.member_key}, headers=setup.gateway)
    assert response.status_code == 401


def test_a_gateway_credential_works_for_every_org(client: FlaskClient, db: Database, system: Actor,
                                                  runner: CliRunner, setup: Setup) -> None:
    other = json.loads(runner.invoke(main, ["org", "create", "Globex", "--json"]).stdout)
    body = _check(client, setup, other["admin_api_key"])
    assert body["valid"] is True and body["org"]["slug"] == other["org"]["slug"] and body["role"] == "owner"


def test_max_age_is_set_by_the_operator(db: Database, setup: Setup) -> None:
    from identity.web.app import create_app
    app: Flask = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "t", "TESTING": True,
                             "KEY_CHECK_MAX_AGE_SECONDS": 3})
    response = app.test_client().post("/api/v1/keys/verify", json={"key": "x"}, headers=setup.gateway)
    assert response.headers["Cache-Control"] == "private, max-age=3"


def test_the_check_is_one_select_and_writes_nothing(client: FlaskClient, db: Database, setup: Setup) -> None:
    before = snapshot_rows(db)
    with statements(db) as sent:
        assert _check(client, setup, setup.member_key)["valid"] is True
    assert sent == ["SELECT gateway_credentials"]
    assert snapshot_rows(db) == before  # not even last-used time
    if db.dialect == "sqlite":  # the connection goes back to the pool as the service's writes need it
        raw = db.engine.raw_connection()
        try:
            assert raw.driver_connection.isolation_level is None  # type: ignore[union-attr]
        finally:
            raw.close()


@pytest.mark.postgres_only("plan_cache_mode is PostgreSQL's")
def test_postgresql_reuses_the_checks_plan(client: FlaskClient, setup: Setup) -> None:
    """The check's SELECT joins on unique keys only, so PostgreSQL may plan it once for any key:
    planned for each key's own values, as every other statement is, it cost 1.6 ms of the
    database's CPU per check against 0.1 ms (docs/performance.md)."""
    database = client.application.extensions[EXTENSION]
    for _ in range(8):  # psycopg prepares a statement on its 5th run; PostgreSQL compares plans after 5 more
        assert _check(client, setup, setup.member_key)["valid"] is True
        assert _check(client, setup, "key_000000000000_x")["valid"] is False
    with database.point_engine.connect() as conn:
        assert conn.execute(text("SHOW plan_cache_mode")).scalar_one() == "auto"
        plans = conn.execute(text("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                  "WHERE statement LIKE '%FROM gateway_credentials%'")).one()
    assert plans.generic_plans > 0, plans
    with database.reading() as session:  # every other statement is still planned for its own values
        assert session.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"


def test_the_check_does_not_wait_behind_a_provisioning_write(client: FlaskClient, db: Database,
                                                             setup: Setup) -> None:
    """A writer holds the database (SQLite) or the key's row (PostgreSQL); the check answers anyway."""
    with db.engine.connect() as writer:
        if db.dialect == "sqlite":
            writer.exec_driver_sql("BEGIN IMMEDIATE")
            writer.exec_driver_sql("UPDATE api_keys SET name = 'locked' WHERE id = ?", (setup.member_key_id,))
        else:
            writer.execute(text("SELECT id FROM api_keys WHERE id = :id FOR UPDATE"), {"id": setup.member_key_id})
            writer.execute(text("LOCK TABLE users IN EXCLUSIVE MODE"))
        answer: list[dict] = []
        thread = threading.Thread(target=lambda: answer.append(_check(client, setup, setup.member_key)))
        thread.start()
        thread.join(timeout=5)
        waited = thread.is_alive()
        writer.rollback()
        thread.join()
    assert not waited, "the key check waited behind a write"
    assert answer[0]["valid"] is True


def test_service_keys_outlive_people_and_die_with_their_team(client: FlaskClient, db: Database, system: Actor,
                                                              acme: NewOrg, setup: Setup) -> None:
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Serving")
        teams.add_team_member(session, system, acme.org.id, team.id, setup.member_id)
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/service-keys",
                           json={"name": "prod", "team_id": team.id, "scopes": ["inference"]},
                           headers=_bearer(setup.owner_key))
    assert response.status_code == 201, response.data
    service = response.get_json()
    body = _check(client, setup, service["key"])
    assert body["kind"] == "service" and body["member"] is None and body["team_id"] == team.id
    assert body["role"] == "member" and body["scopes"] == ["inference"]
    with db.transaction() as session:
        users.remove_user(session, system, acme.org.id, setup.member_id)
    assert _check(client, setup, service["key"])["valid"] is True
    with db.transaction() as session:
        team_deletion.delete_team(session, system, acme.org.id, team.id)
    assert _check(client, setup, service["key"]) == {"valid": False, "reason": "revoked"}


def test_a_service_key_may_not_have_the_admin_scope(client: FlaskClient, acme: NewOrg, setup: Setup) -> None:
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/service-keys",
                           json={"team_id": acme.default_team_id, "scopes": ["admin"]},
                           headers=_bearer(setup.owner_key))
    assert response.status_code == 403


def test_the_list_shows_members_their_own_and_admins_all(client: FlaskClient, db: Database, system: Actor,
                                                         acme: NewOrg, setup: Setup) -> None:
    with db.transaction() as session:
        keys.create_service_key(session, system, acme.org.id, team_id=acme.default_team_id, name="svc",
                                scopes=["inference"])
    path = f"/api/v1/orgs/{acme.org.slug}/api-keys"
    mine = client.get(path, headers=_bearer(setup.member_key)).get_json()
    assert [k["id"] for k in mine["keys"]] == [setup.member_key_id] and mine["service_keys"] == []
    entry = mine["keys"][0]
    assert entry["holder"] == {"id": setup.member_id, "userName": "bob@acme.test"}
    assert entry["state"] == "active" and entry["team"]["name"] == "Default"
    assert entry["created_by"]["type"] == "system" and "key" not in entry and "secret_hash" not in entry
    every = client.get(path, headers=_bearer(setup.owner_key)).get_json()
    assert {k["id"] for k in every["keys"]} == {setup.owner_key_id, setup.member_key_id}
    assert [k["name"] for k in every["service_keys"]] == ["svc"] and every["service_keys"][0]["holder"] is None
    first = client.get(f"{path}?limit=1", headers=_bearer(setup.owner_key)).get_json()
    rest = client.get(f"{path}?limit=5&after={first['next']}", headers=_bearer(setup.owner_key)).get_json()
    paged = [k["id"] for page in (first, rest) for k in (*page["keys"], *page["service_keys"])]
    assert len(paged) == 3 and len(set(paged)) == 3 and rest["next"] is None
    assert client.get(f"{path}?kind=nope", headers=_bearer(setup.owner_key)).status_code == 400


def test_credentials_list_their_creator(client: FlaskClient, acme: NewOrg, setup: Setup) -> None:
    made = client.post(f"/api/v1/orgs/{acme.org.slug}/scim-tokens", json={"name": "okta"},
                       headers=_bearer(setup.owner_key))
    assert made.status_code == 201
    listed = client.get(f"/api/v1/orgs/{acme.org.slug}/scim-tokens", headers=_bearer(setup.owner_key)).get_json()
    okta = next(t for t in listed["scim_tokens"] if t["name"] == "okta")
    assert okta["created_by"] == {"type": "api_key", "id": setup.owner_key_id, "display": "owner@acme.test"}
    clients = client.get(f"/api/v1/orgs/{acme.org.slug}/scim-clients", headers=_bearer(setup.owner_key))
    assert clients.status_code == 200 and "scim_clients" in clients.get_json()


def test_the_new_routes_are_in_openapi(client: FlaskClient) -> None:
    paths = client.get("/openapi.json").get_json()["paths"]
    assert "post" in paths["/api/v1/keys/verify"] and "get" in paths["/api/v1/orgs/{org}/api-keys"]
    assert "post" in paths["/api/v1/orgs/{org}/api-keys/{key_id}/rotate"]
    assert "post" in paths["/api/v1/orgs/{org}/service-keys"]


def test_gateway_credentials_are_audited_in_the_operators_chain(db: Database, runner: CliRunner, setup: Setup,
                                                                tmp_path) -> None:
    from audit.log import OPERATOR_STREAM

    prefix = tokens.split_prefix(setup.gateway["Authorization"].split(" ", 1)[1])
    assert runner.invoke(main, ["gateway", "credential", "revoke", str(prefix)]).exit_code == 0
    with db.reading() as session:
        rows = session.execute(text("SELECT action, target_display, org_id FROM audit_events "
                                    "WHERE target_type = 'gateway_credential' ORDER BY seq")).all()
    assert [(r.action, r.target_display, r.org_id) for r in rows] == [
        ("gateway_credential.created", prefix, OPERATOR_STREAM), ("gateway_credential.revoked", prefix, OPERATOR_STREAM)]
    out = tmp_path / "operator.jsonl"
    exported = runner.invoke(main, ["audit", "export", "--org", "@operator", "-o", str(out)])
    assert exported.exit_code == 0, exported.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["action"] for e in lines][:3] == ["operator.chain_begun", "gateway_credential.created",
                                                "gateway_credential.revoked"]
    assert "credential" not in json.dumps(lines[1]["changes"])  # never the secret
    verified = runner.invoke(main, ["audit", "verify", "--org", "@operator"])
    assert verified.exit_code == 0 and "intact" in verified.output, verified.output
