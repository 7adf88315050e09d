"""Invitations, settings and keys through the admin API (DESIGN.md 3.6, 3.7)."""

from __future__ import annotations

import datetime as dt

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import invitations, keys
from identity.db import Database
from identity.errors import DomainError
from identity.models import Invitation, Org
from identity.orgs import NewOrg
from tests.factories import actions, counts


@pytest.fixture
def owner_auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                  team_id=acme.default_team_id, name="owner", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


def _invite(client: FlaskClient, auth: dict[str, str], **body) -> dict:
    response = client.post("/api/v1/orgs/acme/invitations", json={"email": "new@acme.test", **body}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def test_invite_shows_seats_and_accept_takes_one(client: FlaskClient, db: Database, acme: NewOrg, owner_auth) -> None:
    invitation = _invite(client, owner_auth, role="admin")
    assert invitation["seats"]["free"] == 2 and invitation["seats"]["next_seat_cents"] == 0
    assert invitation["token"].startswith("inv_")
    with db.reading() as session:  # only the hash is kept
        stored = session.get(Invitation, invitation["id"])
        assert invitation["token"] not in (stored.secret_hash, stored.prefix)
    accepted = client.post("/api/v1/invitations/accept", json={"token": invitation["token"]})
    assert accepted.status_code == 201 and accepted.json["role"] == "admin"
    assert accepted.json["source"] == "invitation"
    with db.reading() as session:
        assert session.get(Org, acme.org.id).seats_used == 2
    assert actions(db, acme.org.id)[-3:] == ["user.created", "seat.assigned", "invitation.accepted"]
    again = client.post("/api/v1/invitations/accept", json={"token": invitation["token"]})
    assert again.status_code == 400 and "accepted" in again.json["detail"]


def test_a_second_invitation_to_a_pending_address_is_refused_before_and_at_send(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, owner_auth) -> None:
    """One pending invitation per address (resend gives it a new link): check_invitation (the console's
    review step) and invite refuse the second, whatever the case of the address, next to `email`;
    once the first is revoked the address may be invited again."""
    first = _invite(client, owner_auth)
    again = client.post("/api/v1/orgs/acme/invitations", json={"email": "NEW@acme.test"}, headers=owner_auth)
    assert again.status_code == 409 and "pending invitation" in again.json["detail"], again.json
    with db.reading() as session, pytest.raises(DomainError, match="pending invitation") as refused:
        invitations.check_invitation(session, system, acme.org.id, email="new@acme.test")
    assert refused.value.context["field"] == "email"
    with db.reading() as session, pytest.raises(DomainError, match="already a member"):
        invitations.check_invitation(session, system, acme.org.id, email="owner@acme.test")
    with db.transaction() as session:
        invitations.revoke(session, system, acme.org.id, first["id"])
    with db.reading() as session:
        assert invitations.check_invitation(session, system, acme.org.id, email=" new@acme.test ") == "new@acme.test"
    _invite(client, owner_auth)


@pytest.mark.postgres_only("on SQLite a write transaction holds the database: nothing commits between its read and write")
@pytest.mark.parametrize("late", ["revoke", "resend", "decline"])
def test_a_change_that_read_the_invitation_before_its_acceptance_committed_is_refused(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, owner_auth, late: str) -> None:
    """The other order of test_invitation_review's race: the acceptance commits between another
    change's read of the invitation (pending) and its write. The later change must not write over
    `accepted` (a member made from a revoked, resent or declined invitation): it is refused, whole."""
    sent = _invite(client, owner_auth)
    with pytest.raises(DomainError) as refused, db.transaction() as session:
        read = invitations.check_pending(session, sent["token"])  # kept: the session holds its objects weakly
        assert read.status == "pending"
        assert client.post("/api/v1/invitations/accept", json={"token": sent["token"]}).status_code == 201
        if late == "revoke":
            invitations.revoke(session, system, acme.org.id, sent["id"])
        elif late == "resend":
            invitations.resend(session, system, acme.org.id, sent["id"])
        else:
            invitations.decline(session, system, sent["token"])
    assert refused.value.message == "this invitation was accepted meanwhile"
    with db.reading() as session:
        assert session.get_one(Invitation, sent["id"]).status == "accepted"
    assert actions(db, acme.org.id)[-1] == "invitation.accepted"


def test_a_resend_makes_the_resender_its_sender_and_says_so(client: FlaskClient, db: Database, system: Actor,
                                                             acme: NewOrg, owner_auth) -> None:
    """The resender stands behind the new link: `invited_by` becomes theirs (an acceptance asks whether
    they may still invite), recorded in `invitation.resent`. Resent by its own sender, nothing to say."""
    sent = _invite(client, owner_auth)
    with db.transaction() as session:
        first = session.get_one(Invitation, sent["id"]).invited_by
        invitations.resend(session, system, acme.org.id, sent["id"])
        invitations.resend(session, system, acme.org.id, sent["id"])
    with db.reading() as session:
        assert session.get_one(Invitation, sent["id"]).invited_by == system.id
        resent = [e.changes for e in session.scalars(select(AuditEvent).where(
            AuditEvent.action == "invitation.resent").order_by(AuditEvent.seq))]
    assert [c.get("invited_by") for c in resent] == [{"before": first, "after": system.id}, None]


def test_declined_and_expired_invitations_cannot_be_accepted(client: FlaskClient, db: Database, owner_auth,
                                                            acme: NewOrg) -> None:
    declined = _invite(client, owner_auth, email="no@acme.test")
    assert client.post("/api/v1/invitations/decline", json={"token": declined["token"]}).status_code == 204
    assert client.post("/api/v1/invitations/accept", json={"token": declined["token"]}).status_code == 400
    old = _invite(client, owner_auth, email="late@acme.test")
    with clock.frozen_at(dt.datetime.now(dt.UTC) + dt.timedelta(days=7, seconds=1)):
        before = counts(db)
        late = client.post("/api/v1/invitations/accept", json={"token": old["token"]})
    assert late.status_code == 400 and "expired" in late.json["detail"]
    assert counts(db)["users"] == before["users"]
    assert actions(db, acme.org.id)[-1] == "invitation.expired"


def _expiry(db: Database, org_id: str) -> AuditEvent:
    with db.reading() as session:
        return session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id,
                                                        AuditEvent.action == "invitation.expired")).one()


def test_an_expiry_found_by_the_invitees_link_carries_the_links_request(client: FlaskClient, db: Database,
                                                                       owner_auth, acme: NewOrg) -> None:
    """The invitee is the actor of an expiry their link found (docs/audit.md 2), seen through that
    request as every actor is: its id, address and user agent."""
    old = _invite(client, owner_auth, email="late@acme.test")
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        late = client.post("/api/v1/invitations/accept", json={"token": old["token"]},
                           headers={"User-Agent": "Mail client/1.0", "X-Request-Id": "late-accept"})
    assert late.status_code == 400
    expired = _expiry(db, acme.org.id)
    assert (expired.actor_type, expired.actor_display) == ("system", "invitee late@acme.test")
    assert (expired.user_agent, expired.client_request_id) == ("Mail client/1.0", "late-accept")
    assert expired.request_id is not None and expired.ip is not None


def test_revoking_an_expired_invitation_names_the_admin_who_revoked_it(client: FlaskClient, db: Database,
                                                                      owner_auth, acme: NewOrg) -> None:
    """A pending invitation past its week is recorded as expired when revoked: the act is the
    caller's, through their key and request, not the invitee's, whose link played no part."""
    old = _invite(client, owner_auth, email="late@acme.test")
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        revoked = client.delete(f"/api/v1/orgs/acme/invitations/{old['id']}", headers=owner_auth)
    assert revoked.status_code == 204
    expired = _expiry(db, acme.org.id)
    assert (expired.actor_type, expired.actor_display) == ("api_key", acme.owner.user_name)
    assert expired.request_id is not None and expired.user_agent is not None


def test_forged_invitation_token_is_401(client: FlaskClient, owner_auth) -> None:
    real = _invite(client, owner_auth)
    forged = real["token"][:-4] + "AAAA"
    assert client.post("/api/v1/invitations/accept", json={"token": forged}).status_code == 401


def test_invitation_refused_at_the_seat_cap_writes_no_member(client: FlaskClient, db: Database, owner_auth,
                                                            acme: NewOrg) -> None:
    assert client.patch("/api/v1/orgs/acme/settings", json={"max_seats": 1}, headers=owner_auth).status_code == 200
    invitation = _invite(client, owner_auth)
    refused = client.post("/api/v1/invitations/accept", json={"token": invitation["token"]})
    assert refused.status_code == 403 and refused.json["code"] == "seat_cap_reached"
    with db.reading() as session:
        assert session.scalars(select(Invitation)).one().status == "pending"
    assert actions(db, acme.org.id)[-1] == "seat.refused"


def test_settings_need_the_right_role_and_valid_values(client: FlaskClient, db: Database, system: Actor,
                                                      acme: NewOrg, owner_auth) -> None:
    from identity import users

    with db.transaction() as session:
        admin = users.provision_user(session, system, acme.org.id, user_name="adm@acme.test", role="admin",
                                     source="manual")
        admin_key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id,
                                        team_id=acme.default_team_id, name="adm", scopes=["admin"])
    admin_auth = {"Authorization": f"Bearer {admin_key.secret}"}
    assert client.patch("/api/v1/orgs/acme/settings", json={"group_sync": "mapped"}, headers=admin_auth).status_code == 200
    denied = client.patch("/api/v1/orgs/acme/settings", json={"max_seats": 9}, headers=admin_auth)
    assert denied.status_code == 403
    for bad in ({"max_seats": 0}, {"group_sync": "chaos"}, {"nope": 1}, {"included_seats": "3"}):
        response = client.patch("/api/v1/orgs/acme/settings", json=bad, headers=owner_auth)
        assert response.status_code == 400, bad
    assert client.get("/api/v1/orgs/acme/settings", headers=owner_auth).json["group_sync"] == "mapped"
    assert actions(db, acme.org.id).count("org.settings_changed") == 1


def test_member_manages_own_keys_only(client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    from identity import users

    with db.transaction() as session:
        dev = users.provision_user(session, system, acme.org.id, user_name="dev@acme.test", source="manual")
        dev_key = keys.create_api_key(session, system, acme.org.id, user_id=dev.id, team_id=acme.default_team_id,
                                      name="dev", scopes=["admin"])
    auth = {"Authorization": f"Bearer {dev_key.secret}"}
    made = client.post("/api/v1/orgs/acme/api-keys", json={"name": "laptop", "scopes": ["inference"]}, headers=auth)
    assert made.status_code == 201 and made.json["key"].startswith(made.json["prefix"])
    verified = client.get("/api/v1/key", headers={"Authorization": f"Bearer {made.json['key']}"})
    assert verified.json["user"]["userName"] == "dev@acme.test" and verified.json["scopes"] == ["inference"]
    other = client.post("/api/v1/orgs/acme/api-keys", json={"user_id": acme.owner.id}, headers=auth)
    assert other.status_code == 403
    assert client.delete(f"/api/v1/orgs/acme/api-keys/{made.json['id']}", headers=auth).status_code == 204
    assert client.get("/api/v1/key", headers={"Authorization": f"Bearer {made.json['key']}"}).status_code == 401
