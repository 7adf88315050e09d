"""Request ids are the server's: a client's X-Request-Id is kept beside it, never instead of it."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from audit.models import AuditEvent
from audit.verify import verify_database
from identity import keys
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.logs import JsonFormatter
from tests.scim.client import scim_for


def _events(db: Database, org_id: str, action: str) -> list[AuditEvent]:
    """The org's events of `action` made over HTTP (the org's creation made some without a request)."""
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.org_id == org_id, AuditEvent.action == action, AuditEvent.actor_type != "system")
            .order_by(AuditEvent.seq)))




def test_a_forged_request_id_never_becomes_the_events_request_id(client: FlaskClient, db: Database,
                                                                 system: Actor, logged) -> None:
    scim = scim_for(db, client, system, "Forgery")
    first = scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a@x.test"},
                      **{"X-Request-Id": "forged"})
    second = scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "b@x.test"},
                       **{"X-Request-Id": "forged"})
    assert (first.status_code, second.status_code) == (201, 201)
    created = _events(db, scim.org_id, "user.created")
    assert len(created) == 2
    server_ids = {first.headers["X-Request-Id"], second.headers["X-Request-Id"]}
    # The response's X-Request-Id is the server's own, each request its own; the client's is echoed apart.
    assert "forged" not in server_ids and len(server_ids) == 2
    assert first.headers["X-Client-Request-Id"] == "forged"
    assert {e.request_id for e in created} == server_ids
    assert [e.client_request_id for e in created] == ["forged", "forged"]
    # The log line names both, under their own names.
    found = [json.loads(JsonFormatter().format(r)) for r in logged.records if r.getMessage() == "request"]
    assert {(line["request_id"], line["client_request_id"]) for line in found if line["method"] == "POST"} == {
        (rid, "forged") for rid in server_ids}
    # client_request_id is outside the hash: the chain of events that carry it verifies.
    with db.reading() as session:
        assert verify_database(session, scim.org_id, Ed25519PrivateKey.generate().public_key()).intact


def test_without_a_client_id_none_is_kept_and_the_server_still_makes_one(client: FlaskClient, db: Database,
                                                                          system: Actor) -> None:
    scim = scim_for(db, client, system, "Plain")
    made = scim.post("/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "c@x.test"})
    assert made.status_code == 201 and "X-Client-Request-Id" not in made.headers
    (event,) = _events(db, scim.org_id, "user.created")
    assert event.request_id == made.headers["X-Request-Id"] and len(event.request_id) == 32
    assert event.client_request_id is None


def test_the_admin_api_keeps_the_clients_id_beside_its_own(client: FlaskClient, db: Database, system: Actor,
                                                           acme: NewOrg) -> None:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["admin"])
    response = client.post("/api/v1/orgs/acme/teams", json={"name": "Ops"},
                           headers={"Authorization": f"Bearer {key.secret}", "X-Request-Id": "ticket-42"})
    assert response.status_code == 201
    (event,) = _events(db, acme.org.id, "team.created")
    assert (event.request_id, event.client_request_id) == (response.headers["X-Request-Id"], "ticket-42")
    assert event.request_id != "ticket-42"


def test_a_client_id_that_is_not_a_plain_token_is_dropped(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": "bad id <script>"})
    assert "X-Client-Request-Id" not in response.headers
    assert len(response.headers["X-Request-Id"]) == 32 and response.headers["X-Request-Id"].isalnum()


def test_the_clients_id_is_part_of_the_audit_event_an_auditor_reads(client: FlaskClient, db: Database,
                                                                    system: Actor, acme: NewOrg) -> None:
    """README ("Running in production"): a client's X-Request-Id is kept "in ... the audit event's
    `client_request_id`". It is stored in a column that no way out of the log shows: the admin API's
    events, its JSON Lines export (and the CLI's, the same `audit.events.document` shape) leave it out,
    so a SIEM or an IdP admin cannot find the event of their request by the id they sent."""
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["admin"])
    owner = {"Authorization": f"Bearer {key.secret}"}
    made = client.post("/api/v1/orgs/acme/teams", json={"name": "Ops"}, headers={**owner, "X-Request-Id": "ticket-42"})
    assert made.status_code == 201
    read = client.get("/api/v1/orgs/acme/audit-events", query_string={"action": "team.created",
                                                                        "actor_type": "api_key"}, headers=owner)
    exported = client.get("/api/v1/orgs/acme/audit-events/export", headers=owner,
                          query_string={"format": "jsonl", "action": "team.created", "actor_type": "api_key"})
    assert (read.status_code, exported.status_code) == (200, 200)
    (event,) = read.json["events"]
    (line,) = [json.loads(text) for text in exported.get_data(as_text=True).splitlines() if text]
    assert event["request_id"] == made.headers["X-Request-Id"]
    assert event.get("client_request_id") == "ticket-42", sorted(event)
    assert line.get("client_request_id") == "ticket-42", sorted(line)
