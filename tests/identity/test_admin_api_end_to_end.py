"""Issue 16's "What proves it", end to end on both databases, through the real HTTP routes.

An org is created; a person is invited by email through a real SMTP server on 127.0.0.1, the mail
is read and its link's token accepted; the new member joins a second team and their org role
changes; they create, list and rotate their own key for that team; the gateway verifies it; taken
out of the team, the gateway refuses that key as revoked; ownership goes to the new member, who
deletes the org; the operator's audit export holds every step in order and `audit verify` passes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from audit import Actor
from identity import gateway, keys, orgs
from identity.db import Database
from identity.web.cli import main
from tests.smtp import smtp_server

BASE_URL = "http://localhost"  # the `app` fixture's BASE_URL


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def smtp() -> Iterator[Any]:
    with smtp_server() as served:
        yield served


def _in_order(log: list[Any], expected: list[Any]) -> list[Any]:
    """Return the expected events missing from `log` as an ordered subsequence (empty: all there, in order)."""
    position = 0
    for index, action in enumerate(expected):
        try:
            position = log.index(action, position) + 1
        except ValueError:
            return expected[index:]
    return []


def test_invite_join_key_gateway_leave_transfer_delete_and_audit(
        db: Database, system: Actor, app: Flask, client: FlaskClient, runner: CliRunner, smtp: Any) -> None:
    inbox, port = smtp
    app.config["SMTP_URL"] = f"smtp://127.0.0.1:{port}"  # read per request, as `identity serve` reads it

    # 1. The org, its owner's admin key, and the gateway's service credential (operator acts, in the domain).
    with db.transaction() as session:
        made = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
    slug, org_id, default_team = made.org.slug, made.org.id, made.default_team_id
    with db.transaction() as session:
        owner_key = keys.create_api_key(session, system, org_id, user_id=made.owner.id, team_id=default_team,
                                        name="owner", scopes=["admin"])
        credential = gateway.create_credential(session, system, name="e2e gateway")
    owner, gw = _bearer(owner_key.secret), _bearer(credential.secret)
    api = f"/api/v1/orgs/{slug}"

    # 2. Invite by email; the mail arrives over SMTP; its link's token is accepted.
    sent = client.post(f"{api}/invitations", json={"email": "dana@acme.test", "role": "viewer"}, headers=owner)
    assert sent.status_code == 201, sent.json
    assert sent.json["mail"]["status"] == "sent"
    message = inbox.wait(1)[0]
    assert message["To"] == "dana@acme.test"
    link = inbox.link()
    assert link == sent.json["link"] and link.startswith(f"{BASE_URL}/invite/")
    token = link.rsplit("/", 1)[1]
    accepted = client.post("/api/v1/invitations/accept", json={"token": token})
    assert accepted.status_code == 201, accepted.json
    dana = accepted.json
    assert dana["userName"] == "dana@acme.test" and dana["role"] == "viewer" and dana["active"] is True
    assert client.post("/api/v1/invitations/accept", json={"token": token}).status_code >= 400  # used up

    # 3. A second team; the new member is added to it; their org role changes (viewer -> member).
    team = client.post(f"{api}/teams", json={"name": "Serving"}, headers=owner)
    assert team.status_code == 201, team.json
    team_id = team.json["id"]
    added = client.post(f"{api}/teams/{team_id}/members", json={"user_id": dana["id"]}, headers=owner)
    assert added.status_code == 201, added.json
    assert added.json["user_id"] == dana["id"] and added.json["team_role"] == "member"
    changed = client.patch(f"{api}/members/{dana['id']}", json={"role": "member"}, headers=owner)
    assert changed.status_code == 200 and changed.json["role"] == "member", changed.json

    # 4. As the new member. The admin API takes only keys with the `admin` scope, and a person who joined
    # by invitation has no key yet: the first one is made for them in the domain (an operator's act).
    with db.transaction() as session:
        dana_admin = keys.create_api_key(session, system, org_id, user_id=dana["id"], team_id=default_team,
                                         name="dana admin", scopes=["admin"])
    as_dana = _bearer(dana_admin.secret)
    own = client.post(f"{api}/api-keys", json={"name": "serving", "team_id": team_id, "scopes": ["inference"]},
                      headers=as_dana)
    assert own.status_code == 201, own.json
    first_key = own.json
    listed = client.get(f"{api}/api-keys", headers=as_dana)
    assert listed.status_code == 200, listed.json
    mine = {k["id"]: k for k in listed.json["keys"]}
    assert set(mine) == {dana_admin.id, first_key["id"]}  # a member sees their own keys, and only those
    assert mine[first_key["id"]]["team"]["id"] == team_id and mine[first_key["id"]]["state"] == "active"
    rotated = client.post(f"{api}/api-keys/{first_key['id']}/rotate", json={"grace_seconds": 3600}, headers=as_dana)
    assert rotated.status_code == 201, rotated.json
    new_key = rotated.json
    assert new_key["rotated_from"] == first_key["id"] and new_key["key"] != first_key["key"]

    # 5. The gateway verifies the rotated key.
    def check(secret: str) -> dict[str, Any]:
        answer = client.post("/api/v1/keys/verify", json={"key": secret}, headers=gw)
        assert answer.status_code == 200, answer.data
        return answer.json

    verified = check(new_key["key"])
    assert verified["valid"] is True, verified
    assert (verified["key_id"], verified["team_id"], verified["role"]) == (new_key["id"], team_id, "member")
    assert verified["org"] == {"id": org_id, "slug": slug} and verified["member"]["id"] == dana["id"]
    assert check(first_key["key"])["valid"] is True  # the old one, in its grace period

    # 6. Out of the team: the preview counts the keys that go, and the gateway refuses them as revoked.
    preview = client.get(f"{api}/teams/{team_id}/members/{dana['id']}/removal", headers=owner)
    assert preview.status_code == 200, preview.json
    assert preview.json["keys_to_revoke"] == 2  # the rotated key and its predecessor, still in its grace
    assert set(preview.json["key_prefixes"]) == {first_key["prefix"], new_key["prefix"]}
    removed = client.delete(f"{api}/teams/{team_id}/members/{dana['id']}", headers=owner)
    assert removed.status_code == 204, removed.data
    assert check(new_key["key"]) == {"valid": False, "reason": "revoked"}
    assert check(first_key["key"]) == {"valid": False, "reason": "revoked"}
    assert check(dana_admin.secret)["valid"] is True  # her key for the default team is not that team's

    # 7. Ownership to the new member (active), who then deletes the org.
    transferred = client.post(f"{api}/transfer-ownership", json={"user_id": dana["id"]}, headers=owner)
    assert transferred.status_code == 200, transferred.json
    assert transferred.json["owner"]["role"] == "owner"
    assert client.delete(api, json={"confirm": slug}, headers=owner).status_code == 403  # an admin now
    deleted = client.delete(api, json={"confirm": slug}, headers=as_dana)
    assert deleted.status_code == 204, deleted.data
    assert check(dana_admin.secret)["valid"] is False
    assert client.get(f"{api}/members", headers=as_dana).status_code == 401

    # 8. The operator exports the deleted org's log: every step, in order; and the chain verifies.
    exported = runner.invoke(main, ["audit", "export", "--org", slug, "--format", "jsonl"])
    assert exported.exit_code == 0, exported.output
    rows = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    log = [(row["action"], row["target"]["id"], row["actor"]["display"]) for row in rows]
    invitation = sent.json["id"]
    steps = [("invitation.created", invitation, "owner@acme.test"),
             ("mail.sent", invitation, "owner@acme.test"),
             ("invitation.accepted", invitation, "invitee dana@acme.test"),
             ("team.created", team_id, "owner@acme.test"),
             ("team.member_added", dana["id"], "owner@acme.test"),
             ("member.role_changed", dana["id"], "owner@acme.test"),
             ("api_key.created", first_key["id"], "dana@acme.test"),
             ("api_key.rotated", first_key["id"], "dana@acme.test"),
             ("team.member_removed", dana["id"], "owner@acme.test"),
             ("org.ownership_transferred", org_id, "owner@acme.test"),
             ("org.deleted", org_id, "dana@acme.test")]
    assert _in_order(log, steps) == [], log
    removal = next(row for row in rows if row["action"] == "team.member_removed")
    assert removal["changes"]["team_id"] == team_id
    assert set(removal["changes"]["keys_revoked"]) == {first_key["prefix"], new_key["prefix"]}
    verified_log = runner.invoke(main, ["audit", "verify", "--org", slug])
    assert verified_log.exit_code == 0, verified_log.output
