"""The org's life through the admin API (issue 16): ownership transferred in one step, the org deleted
with every credential stopped and its audit log kept, exportable and verifiable; the seat ledger
and group mappings edited in place."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import groups, invitations, keys, mappings, scim_credentials, users
from identity.db import Database
from identity.models import ApiKey, Org, RoleGrant, ScimClient, ScimToken, User
from identity.orgs import NewOrg
from identity.vocabulary import KeyStatus
from identity.web.cli import main
from saml import configuration as saml_configuration
from saml.connection import IdpSettings
from saml.models import SamlConnection
from tests.factories import actions, counts, provision

API = "/api/v1/orgs/acme"
IDP = IdpSettings("https://idp.example.com/entity", "https://idp.example.com/sso", None, [])


def _key(db: Database, system: Actor, acme: NewOrg, user_id: str, scopes: tuple[str, ...] = ("admin",)) -> dict:
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=user_id, team_id=acme.default_team_id,
                                     name="k", scopes=list(scopes))
    return {"Authorization": f"Bearer {issued.secret}"}


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    return _key(db, system, acme, acme.owner.id)


def test_transfer_ownership_in_one_step(client: FlaskClient, db: Database, system: Actor, acme: NewOrg,
                                        auth) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    answer = client.post(f"{API}/transfer-ownership", json={"user_id": bob.id}, headers=auth)
    assert answer.status_code == 200 and answer.json["owner"]["role"] == "owner", answer.json
    with db.reading() as session:
        assert (users.org_role(session, bob.id), users.org_role(session, acme.owner.id)) == ("owner", "admin")
    assert actions(db, acme.org.id)[-3:] == ["member.role_changed", "member.role_changed",
                                             "org.ownership_transferred"]
    # The caller is an admin now: a second transfer is refused, and changes nothing.
    before = counts(db)
    again = client.post(f"{API}/transfer-ownership", json={"user_id": acme.owner.id}, headers=auth)
    assert again.status_code == 403 and counts(db) == before


@pytest.mark.parametrize("who,status,field", [
    ("deactivated", 400, "user_id"), ("self", 400, "user_id"), ("unknown", 404, None), ("missing", 400, "user_id"),
])
def test_a_transfer_to_no_active_other_member_is_refused(client: FlaskClient, db: Database, system: Actor,
                                                         acme: NewOrg, auth, who, status, field) -> None:
    carol = provision(db, system, acme.org.id, "carol@acme.test")
    with db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, carol.id)
    body = {"deactivated": {"user_id": carol.id}, "self": {"user_id": acme.owner.id},
            "unknown": {"user_id": "00000000-0000-0000-0000-000000000000"}, "missing": {}}[who]
    before = counts(db)
    answer = client.post(f"{API}/transfer-ownership", json=body, headers=auth)
    assert answer.status_code == status and answer.json.get("field") == field, answer.json
    assert counts(db) == before


def test_only_an_owner_transfers_or_deletes(client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    header = _key(db, system, acme, admin.id)
    before = counts(db)
    assert client.post(f"{API}/transfer-ownership", json={"user_id": admin.id}, headers=header).status_code == 403
    assert client.delete(API, json={"confirm": "acme"}, headers=header).status_code == 403
    assert counts(db) == before


def _live_org(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """Acme with members, keys, a SCIM token and client, a pending invitation and SSO required."""
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        bob_key = keys.create_api_key(session, system, acme.org.id, user_id=bob.id, team_id=acme.default_team_id,
                                      name="bob", scopes=["inference"])
        token = scim_credentials.create_scim_token(session, system, acme.org.id)
        client = scim_credentials.create_scim_client(session, system, acme.org.id)
        invitations.invite(session, system, acme.org.id, email="dora@acme.test")
        saml_configuration.configure_connection(session, system, acme.org.id, IDP)
    with db.transaction() as session:
        from identity import orgs
        orgs.update_settings(session, system, acme.org.id, {"require_sso": True})
    return {"bob": bob_key.secret, "scim": token.secret, "client_id": client.prefix, "client_secret": client.secret}


def test_deleting_the_org_needs_its_slug(client: FlaskClient, db: Database, acme: NewOrg, auth) -> None:
    before = counts(db)
    for body, field in (({"confirm": "Acme"}, "confirm"), ({}, "confirm"), ({"confirm": "acme", "x": 1}, "x")):
        answer = client.delete(API, json=body, headers=auth)
        assert (answer.status_code, answer.json["field"]) == (400, field), answer.json
    assert counts(db) == before


def test_a_deleted_org_stops_every_credential_and_keeps_its_log(client: FlaskClient, db: Database, system: Actor,
                                                                acme: NewOrg, auth, cli_env) -> None:
    secrets = _live_org(db, system, acme)
    oauth = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": secrets["client_id"],
                                              "client_secret": secrets["client_secret"]}).json["access_token"]
    assert client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {oauth}"}).status_code == 200
    assert client.delete(API, json={"confirm": "acme"}, headers=auth).status_code == 204
    # Every credential answers 401 now, and nothing of the org is reachable.
    for header in (auth, {"Authorization": f"Bearer {secrets['bob']}"}):
        assert client.get(f"{API}/members", headers=header).status_code == 401
    for bearer in (secrets["scim"], oauth):
        assert client.get("/scim/v2/Users", headers={"Authorization": f"Bearer {bearer}"}).status_code == 401
    assert client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": secrets["client_id"],
                                             "client_secret": secrets["client_secret"]}).status_code in (400, 401)
    assert client.get("/saml/acme/login").status_code == 404
    with db.reading() as session:
        org = session.get_one(Org, acme.org.id)
        assert org.deleted_at is not None and (org.seats_used, org.require_sso) == (0, False)
        assert all(u.deleted_at is not None and not u.has_seat
                   for u in session.scalars(select(User).where(User.org_id == acme.org.id)))
        assert not session.scalars(select(RoleGrant).where(RoleGrant.org_id == acme.org.id)).all()
        assert {k.status for k in session.scalars(select(ApiKey).where(ApiKey.org_id == acme.org.id))} == {
            KeyStatus.REVOKED}
        assert all(t.revoked_at for t in session.scalars(select(ScimToken).where(ScimToken.org_id == acme.org.id)))
        assert all(c.revoked_at for c in session.scalars(select(ScimClient).where(ScimClient.org_id == acme.org.id)))
        assert session.get(SamlConnection, acme.org.id) is None
    logged = actions(db, acme.org.id)
    assert logged[-1] == "org.deleted" and logged.count("user.deleted") == 2
    assert {"scim_token.revoked", "scim_client.revoked", "invitation.expired", "seat.released"} <= set(logged)
    # The operator still exports and verifies the log (the chain, and reconciled with the data).
    runner = CliRunner(env=cli_env)
    exported = runner.invoke(main, ["audit", "export", "--org", "acme", "--format", "jsonl"], catch_exceptions=False)
    assert exported.exit_code == 0
    lines = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    assert "org.deleted" in {event["action"] for event in lines}
    verified = runner.invoke(main, ["audit", "verify", "--org", "acme"], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    billing = runner.invoke(main, ["billing", "check", "--org", "acme"], catch_exceptions=False)
    assert billing.exit_code == 0, billing.output
    # The renewal cron over every org skips the deleted one (its lock refuses it: nothing is charged to it).
    renewed = runner.invoke(main, ["billing", "renew"], catch_exceptions=False)
    assert renewed.exit_code == 0 and acme.org.id not in renewed.output, renewed.output


def test_the_seat_ledger_pages_newest_first_with_the_cycle_totals(client: FlaskClient, db: Database,
                                                                  system: Actor, acme: NewOrg, auth) -> None:
    for n in range(5):  # 3 included seats: the owner and two more; then three purchases
        provision(db, system, acme.org.id, f"m{n}@acme.test")
    seen, after = [], ""
    while True:
        page = client.get(f"{API}/seat-charges?limit=2&after={after}", headers=auth).json
        seen += page["charges"]
        if page["next"] is None:
            break
        after = page["next"]
    assert [c["kind"] for c in seen] == ["seat_purchase"] * 3
    assert [c["cause"]["user_id"] for c in seen][::-1] == [u for u in _member_ids(db, acme)[3:]]
    assert all(c["seats"] == 1 and c["amount_cents"] > 0 and c["cycle"]["start"] for c in seen)
    totals = page["current_cycle"]
    assert (totals["charges"], totals["seats_charged"]) == (3, 3)
    assert totals["amount_cents"] == sum(c["amount_cents"] for c in seen)
    assert totals["seats"]["purchased"] == 3


def _member_ids(db: Database, acme: NewOrg) -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(User.id).where(User.org_id == acme.org.id)
                                    .order_by(User.created_at, User.id)))


def test_members_and_viewers_do_not_read_the_ledger(client: FlaskClient, db: Database, system: Actor,
                                                    acme: NewOrg) -> None:
    member = provision(db, system, acme.org.id, "member@acme.test")
    assert client.get(f"{API}/seat-charges", headers=_key(db, system, acme, member.id)).status_code == 403


def test_a_group_mapping_edited_in_place_is_reapplied(client: FlaskClient, db: Database, system: Actor,
                                                      acme: NewOrg, auth) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        rule = mappings.create_mapping(session, system, acme.org.id, group_external_id="00g1", org_role="viewer")
        groups.create_group(session, system, acme.org.id, display_name="Eng", external_id="00g1",
                            member_ids=[bob.id])
    answer = client.patch(f"{API}/group-mappings/{rule.id}", json={"org_role": "admin"}, headers=auth)
    assert answer.status_code == 200 and (answer.json["id"], answer.json["org_role"]) == (rule.id, "admin")
    with db.reading() as session:
        assert users.org_role(session, bob.id) == "admin"
    assert "group_mapping.updated" in actions(db, acme.org.id)
    before = counts(db)
    for body, field in (({"org_role": 3}, "org_role"), ({"team": "x"}, "team"),
                        ({"group_external_id": None}, "group")):
        refused = client.patch(f"{API}/group-mappings/{rule.id}", json=body, headers=auth)
        assert (refused.status_code, refused.json["field"]) == (400, field), refused.json
    assert counts(db) == before
