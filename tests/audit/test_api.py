"""The admin API of the audit log: filtered reading with an opaque cursor that tails, streamed
exports (JSON Lines that verify, CSV safe for spreadsheets, OCSF classes), checkpoints and the
public key; reading and exporting are themselves audited."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, record
from audit.log import Target
from audit.models import AuditEvent
from audit.verify import verify_file
from identity import keys, teams, users
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.openapi import document
from tests.audit.conftest import as_attacker
from tests.factories import actions, provision


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def page(client: FlaskClient, key: str, slug: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/orgs/{slug}/audit-events", query_string=params, headers=auth(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    body: dict[str, Any] = response.get_json()
    return body


def test_pages_follow_the_cursor_in_chain_order_and_the_cursor_tails(
        client: FlaskClient, admin_key: str, db: Database, busy: NewOrg, system: Actor) -> None:
    seen: list[int] = []
    body = page(client, admin_key, busy.org.slug, limit=4, action="team.*")
    while body["events"]:
        seen += [e["seq"] for e in body["events"]]
        assert all(e["action"].startswith("team.") for e in body["events"])
        body = page(client, admin_key, busy.org.slug, cursor=body["next_cursor"], limit=4)
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 13  # Default team, 6 created, 6 renamed
    tail = body["next_cursor"]
    assert tail, "without until the cursor never ends"
    with db.transaction() as session:
        teams.create_team(session, system, busy.org.id, "Late arrival")
    polled = page(client, admin_key, busy.org.slug, cursor=tail)
    assert [e["changes"]["name"] for e in polled["events"]] == ["Late arrival"]
    assert polled["next"] and "cursor=" in polled["next"]


def test_a_closed_range_ends(client: FlaskClient, admin_key: str, busy: NewOrg) -> None:
    everything = page(client, admin_key, busy.org.slug, limit=1000, until="2999-01-01T00:00:00Z")
    assert everything["next_cursor"], "an `until` in the future still tails"
    body = page(client, admin_key, busy.org.slug, limit=5, until=everything["events"][-1]["time"])
    pages = 1
    while body["next_cursor"]:
        body = page(client, admin_key, busy.org.slug, cursor=body["next_cursor"], limit=5)
        pages += 1
    assert pages == 4  # 16 events before the last one's time: pages of 5, 5, 5 and 0..1


def test_filters_by_actor_target_and_outcome(client: FlaskClient, admin_key: str, db: Database, acme: NewOrg,
                                             system: Actor) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    as_owner = Actor("user", acme.owner.id, "owner@acme.test", org_id=acme.org.id, role="owner")
    with db.transaction() as session:
        users.change_role(session, as_owner, acme.org.id, bob.id, "admin")
    with db.transaction() as session:
        record(session, system, "sso.login_failed", Target("user", bob.id, bob.user_name), {"reason": "expired"},
               org_id=acme.org.id, outcome="failure")
    by_target = page(client, admin_key, acme.org.slug, target=bob.id)["events"]
    assert [e["action"] for e in by_target] == ["user.created", "seat.assigned", "member.role_changed",
                                                "sso.login_failed"]
    by_actor = page(client, admin_key, acme.org.slug, actor=acme.owner.id)["events"]
    assert [(e["action"], e["actor"]["display"]) for e in by_actor] == [("member.role_changed", "owner@acme.test")]
    failed = page(client, admin_key, acme.org.slug, outcome="failure")["events"]
    assert [e["action"] for e in failed] == ["sso.login_failed"]
    several = page(client, admin_key, acme.org.slug, action="user.created,sso.login_failed")["events"]
    assert {e["action"] for e in several} == {"user.created", "sso.login_failed"}


def test_reading_and_exporting_are_audited(client: FlaskClient, admin_key: str, db: Database, acme: NewOrg) -> None:
    page(client, admin_key, acme.org.slug, action="user.")
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events/export", query_string={"format": "csv"},
                          headers=auth(admin_key))
    assert response.status_code == 200
    response.get_data()
    assert actions(db, acme.org.id)[-2:] == ["audit.read", "audit.exported"]
    events = page(client, admin_key, acme.org.slug, action="audit.")["events"]
    read, exported = events[0], events[1]
    assert read["actor"]["type"] == "api_key" and read["changes"]["selection"] == {"actions": ["user."]}
    assert exported["changes"]["format"] == "csv" and exported["request_id"]


def test_jsonl_export_streams_and_verifies(client: FlaskClient, admin_key: str, busy: NewOrg) -> None:
    response = client.get(f"/api/v1/orgs/{busy.org.slug}/audit-events/export", headers=auth(admin_key),
                          buffered=False)
    assert response.status_code == 200 and response.is_streamed and "Content-Length" not in response.headers
    assert response.mimetype == "application/x-ndjson"
    assert 'filename="audit-acme.jsonl"' in response.headers["Content-Disposition"]
    with response:
        report = verify_file(io.StringIO(response.get_data(as_text=True)), busy.org.id)
    assert report.intact and report.checked == 18, report.summary()  # 16, the key's creation, the export


def test_csv_neutralizes_cells_a_spreadsheet_would_run(client: FlaskClient, admin_key: str, db: Database,
                                                       acme: NewOrg, system: Actor) -> None:
    with db.transaction() as session:
        teams.create_team(session, system, acme.org.id, '=HYPERLINK("http://evil.test","click")')
        teams.create_team(session, system, acme.org.id, "@SUM(1+1)")
        teams.create_team(session, system, acme.org.id, "-2+3")
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events/export", headers=auth(admin_key),
                          query_string={"format": "csv", "action": "team.created"})
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    displays = [row["target_display"] for row in rows]
    assert displays == ["Default", "'=HYPERLINK(\"http://evil.test\",\"click\")", "'@SUM(1+1)", "'-2+3"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row.values())
    assert json.loads(rows[1]["changes"]) == {"name": '=HYPERLINK("http://evil.test","click")'}


def test_ocsf_export_maps_account_authentication_and_group_classes(
        client: FlaskClient, admin_key: str, db: Database, acme: NewOrg, system: Actor) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        team = teams.create_team(session, system, acme.org.id, "Data")
        teams.add_team_member(session, system, acme.org.id, team.id, bob.id)
        record(session, system.with_request("r1", "198.51.100.4", "Mozilla/5.0"), "sso.login_failed",
               Target("user", bob.id, bob.user_name), {"reason": "expired"}, org_id=acme.org.id, outcome="failure")
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events/export", headers=auth(admin_key),
                          query_string={"format": "ocsf"})
    found = {e["metadata"]["event_code"]: e for e in map(json.loads, response.get_data(as_text=True).splitlines())}
    created, added, failed = found["user.created"], found["team.member_added"], found["sso.login_failed"]
    assert (created["class_uid"], created["activity_id"], created["type_uid"]) == (3001, 1, 300101)
    assert created["user"]["uid"] == bob.id  # the last user.created
    assert (added["class_uid"], added["activity_name"]) == (3006, "Add User")
    assert added["group"]["uid"] == team.id and added["user"]["uid"] == bob.id
    assert (failed["class_uid"], failed["activity_name"], failed["status_id"]) == (3002, "Logon", 2)
    assert failed["src_endpoint"] == {"ip": "198.51.100.4"} and failed["http_request"]["user_agent"] == "Mozilla/5.0"
    assert failed["metadata"]["correlation_uid"] == "r1" and failed["category_uid"] == 3
    assert isinstance(failed["time"], int) and failed["unmapped"]["hash"]


def test_checkpoints_are_signed_published_and_listed(client: FlaskClient, admin_key: str, busy: NewOrg) -> None:
    made = client.post(f"/api/v1/orgs/{busy.org.slug}/audit-checkpoints", headers=auth(admin_key))
    assert made.status_code == 201
    checkpoint = made.get_json()
    assert checkpoint["seq"] == 17 and checkpoint["reason"] == "manual"  # 16 and the key's creation
    listed = client.get(f"/api/v1/orgs/{busy.org.slug}/audit-checkpoints", headers=auth(admin_key)).get_json()
    assert [c["hash"] for c in listed["checkpoints"]] == [checkpoint["hash"]]
    published = client.get("/api/v1/audit/public-key").get_json()
    assert published["algorithm"] == "Ed25519" and published["key_id"] == checkpoint["key_id"]
    assert "BEGIN PUBLIC KEY" in published["public_key_pem"] and "PRIVATE" not in json.dumps(published)


@pytest.mark.parametrize("params,code", [
    ({"since": "yesterday"}, "invalid_value"),
    ({"cursor": "not-a-cursor"}, "invalid_value"),
    ({"limit": 0}, "invalid_value"),
    ({"limit": 5000}, "invalid_value"),
    ({"limit": "ten"}, "invalid_value"),  # was read as the default, 100
    ({"limit": ["5", "6"]}, "invalid_value"),
    ({"actr": "someone"}, "invalid_value"),  # a misspelt filter once returned the whole log
])
def test_bad_parameters_are_problems(client: FlaskClient, admin_key: str, acme: NewOrg, params: dict[str, Any],
                                     code: str) -> None:
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events", query_string=params, headers=auth(admin_key))
    assert response.status_code == 400 and response.get_json()["code"] == code
    assert response.content_type == "application/problem+json"


def test_only_owners_and_admins_read_the_log(client: FlaskClient, db: Database, acme: NewOrg,
                                             system: Actor) -> None:
    member = provision(db, system, acme.org.id, "member@acme.test")
    with db.transaction() as session:
        secret = keys.create_api_key(session, system, acme.org.id, user_id=member.id, team_id=acme.default_team_id,
                                     name="m", scopes=["admin"]).secret
    for path in ("audit-events", "audit-events/export", "audit-checkpoints"):
        response = client.get(f"/api/v1/orgs/{acme.org.slug}/{path}", headers=auth(secret))
        assert response.status_code == 403, path
    assert client.get(f"/api/v1/orgs/{acme.org.slug}/audit-events").status_code == 401
    assert client.get("/api/v1/orgs/other-org/audit-events", headers=auth(secret)).status_code == 404


@pytest.mark.parametrize("path", ["audit-events", "audit-events/export"])
def test_a_nul_in_a_filter_is_a_problem_before_anything_is_audited(client: FlaskClient, admin_key: str, db: Database,
                                                                   acme: NewOrg, path: str) -> None:
    before = actions(db, acme.org.id)
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/{path}", query_string={"actor": "a\x00b"},
                          headers=auth(admin_key))
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_value"
    assert actions(db, acme.org.id) == before  # PostgreSQL cannot hold NUL: once a 500 mid-stream


@pytest.mark.parametrize("path,params", [
    ("audit-checkpoints", {"after": "latest"}),
    ("audit-checkpoints", {"since": "2026-01-01"}),
    ("audit-events/export", {"format": "csv", "action_type": "user.created"}),
])
def test_checkpoints_and_export_refuse_parameters_they_do_not_take(client: FlaskClient, admin_key: str, db: Database,
                                                                  acme: NewOrg, path: str, params: dict[str, Any]) -> None:
    before = actions(db, acme.org.id)
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/{path}", query_string=params, headers=auth(admin_key))
    assert response.status_code == 400 and response.get_json()["field"] == next(iter(set(params) - {"format"}))
    assert actions(db, acme.org.id) == before


def test_a_checkpoint_names_its_caller_and_is_refused_over_a_broken_chain(client: FlaskClient, db: Database,
                                                                          admin_key: str, busy: NewOrg) -> None:
    made = client.post(f"/api/v1/orgs/{busy.org.slug}/audit-checkpoints", headers=auth(admin_key))
    assert made.status_code == 201
    with db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.org_id == busy.org.id,
                                                         AuditEvent.action == "audit.checkpoint_created")).one()
    assert event.actor_type == "api_key"  # the caller, not the system
    as_attacker(db, ("UPDATE audit_events SET target_display = 'someone else' WHERE org_id = :org AND seq = 2",
                     {"org": busy.org.id}))
    refused = client.post(f"/api/v1/orgs/{busy.org.slug}/audit-checkpoints", headers=auth(admin_key))
    assert refused.status_code == 409 and refused.get_json()["code"] == "chain_broken"
    assert refused.content_type == "application/problem+json"
    # The answer that matters most to an auditor is in /openapi.json, for a generated client to type.
    documented = document()["paths"]["/api/v1/orgs/{org}/audit-checkpoints"]["post"]["responses"]
    assert documented["409"]["content"] == {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}


def test_creating_a_checkpoint_refuses_a_parameter_it_does_not_take(client: FlaskClient, admin_key: str,
                                                                    acme: NewOrg) -> None:
    """The 400 its operation documents: a query string is checked, not ignored (README)."""
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/audit-checkpoints?reason=scheduled", headers=auth(admin_key))
    assert response.status_code == 400 and response.get_json()["field"] == "reason"
