"""Hostile review (branch review-a): tenant isolation and "no power through a target" (DESIGN.md 3.2,
3.7, 3.8), on ways in that the permission matrices do not cover. Each test fails while its bug is there.
Both databases."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor
from identity import keys, teams
from identity.db import Database
from identity.grants import org_role
from identity.models import ApiKey, User
from identity.orgs import NewOrg
from identity.vocabulary import KeyStatus
from saml import links
from tests.factories import provision


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class Person:
    user_id: str
    key_id: str
    headers: dict[str, str]


def person(db: Database, system: Actor, acme: NewOrg, name: str, role: str, scopes: list[str],
           team_id: str | None = None) -> Person:
    user = provision(db, system, acme.org.id, name, role=role)
    with db.transaction() as session:
        if team_id is not None:
            teams.add_team_member(session, system, acme.org.id, team_id, user.id, "member")
        made = keys.create_api_key(session, system, acme.org.id, user_id=user.id,
                                   team_id=team_id or acme.default_team_id, name=name, scopes=scopes)
    return Person(user.id, made.id, bearer(made.secret))


def key_status(db: Database, key_id: str) -> str:
    with db.reading() as session:
        return str(session.scalar(select(ApiKey.status).where(ApiKey.id == key_id)))


# --- 1. An admin revokes an owner's keys (and removes the owner from a team) by deleting the team ----------


def test_an_admin_may_not_revoke_an_owners_keys_by_deleting_their_team(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """Removing an owner from a team (which revokes the owner's keys for it) is refused to an admin
    (`remove_from_team`: admin BELOW_OWNER; "revoke owners' keys": owners only). Deleting the team
    does both to the owner, and an admin may do it."""
    with db.transaction() as session:
        platform = teams.create_team(session, system, acme.org.id, "Platform")
        teams.add_team_member(session, system, acme.org.id, platform.id, acme.owner.id, "member")
        owners_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=platform.id,
                                         name="prod", scopes=["inference"]).id
    admin = person(db, system, acme, "admin@acme.test", "admin", ["admin", "inference"])
    # The direct way is refused, as the matrix says:
    direct = client.delete(f"/api/v1/orgs/{acme.org.slug}/teams/{platform.id}/members/{acme.owner.id}",
                           headers=admin.headers)
    assert direct.status_code == 403
    assert key_status(db, owners_key) == KeyStatus.ACTIVE
    # The same effect through the team's deletion:
    response = client.delete(f"/api/v1/orgs/{acme.org.slug}/teams/{platform.id}", headers=admin.headers,
                             json={"confirm": "Platform"})
    assert response.status_code in (403, 409), "an admin deleted a team holding an owner's key"
    assert key_status(db, owners_key) == KeyStatus.ACTIVE, "an admin revoked an owner's key"


# --- 2. Wallet reads take any key, whatever its scopes ------------------------------------------------------


@pytest.mark.parametrize("path", ["/wallet", "/wallet/spend?by=member", "/wallet/limits"])
def test_an_inference_only_key_does_not_read_the_admin_api_wallet(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, path: str) -> None:
    """A key without the `admin` scope (nor `usage.read`) is an inference credential: the admin API
    (README "Admin API": "a key with the `admin` scope") must refuse it, as every other org route does."""
    member = person(db, system, acme, "svc@acme.test", "member", ["inference"])
    # Every other admin API read refuses this key:
    assert client.get(f"/api/v1/orgs/{acme.org.slug}/members", headers=member.headers).status_code == 403
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}{path}",
                          headers=member.headers)
    assert response.status_code == 403, f"an inference-only key read {path}: {response.get_json()}"


def test_an_inference_only_key_does_not_read_a_members_spend(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    member = person(db, system, acme, "svc@acme.test", "member", ["inference"])
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/members/{acme.owner.id}/spend", headers=member.headers)
    assert response.status_code == 403, f"an inference-only key read the owner's spend: {response.get_json()}"


# --- 3. An admin obtains a working key of another admin by rotating it -----------------------------------


def test_an_admin_may_not_mint_a_peer_admins_key_by_rotation(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """A key for another member may be made only by one who outranks them (DESIGN 3.2; `create_key_for`:
    admin only BELOW_ADMIN). Rotating another admin's key hands the caller the new secret: a working key
    that speaks (and is audited) as the other admin."""
    alice = person(db, system, acme, "alice@acme.test", "admin", ["admin", "inference"])
    bob = person(db, system, acme, "bob@acme.test", "admin", ["admin", "inference"])
    made_for = client.post(f"/api/v1/orgs/{acme.org.slug}/api-keys", headers=alice.headers,
                           json={"user_id": bob.user_id, "team_id": acme.default_team_id, "scopes": ["admin"]})
    assert made_for.status_code == 403  # the direct way is refused
    rotated = client.post(f"/api/v1/orgs/{acme.org.slug}/api-keys/{bob.key_id}/rotate", headers=alice.headers,
                          json={"grace_seconds": 0})
    if rotated.status_code == 201:
        whoami = client.get("/api/v1/key", headers=bearer(rotated.get_json()["key"])).get_json()
        pytest.fail(f"admin alice holds a working key of admin bob: {whoami}")
    assert rotated.status_code == 403


# --- 4. An admin reads an owner invitation's live link in the outbox, and ends (or answers) it -------------


def test_an_admin_does_not_get_an_owner_invitations_link_from_the_outbox(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """An owner invitation is the owner's business: an admin may neither revoke nor resend it (the
    matrix: `revoke_owner_invitation`, `resend_owner_invitation` owners only). Its link is a live
    credential (identity.outbox), yet the outbox lists it to admins, who can then decline it (the
    same end as a revocation) or accept it in the invitee's place."""
    owner = person(db, system, acme, "second-owner@acme.test", "owner", ["admin", "inference"])
    admin = person(db, system, acme, "admin@acme.test", "admin", ["admin", "inference"])
    invited = client.post(f"/api/v1/orgs/{acme.org.slug}/invitations", headers=owner.headers,
                          json={"email": "new-owner@acme.test", "role": "owner"})
    assert invited.status_code == 201, invited.data
    invitation_id = invited.get_json()["id"]
    assert client.delete(f"/api/v1/orgs/{acme.org.slug}/invitations/{invitation_id}",
                         headers=admin.headers).status_code == 403  # the direct way is refused
    outbox = client.get(f"/api/v1/orgs/{acme.org.slug}/outbox", headers=admin.headers)
    assert outbox.status_code == 200
    links = [m["link"] for m in outbox.get_json()["mails"] if m["to"] == "new-owner@acme.test" and m["link"]]
    if links:
        token = links[0].rsplit("/invite/", 1)[1]
        declined = client.post("/api/v1/invitations/decline", json={"token": token})
        pytest.fail(f"an admin read an owner invitation's link in the outbox; declining with it answered "
                    f"{declined.status_code}")


def test_no_link_an_admin_reads_in_the_outbox_makes_an_owner_or_signs_anyone_in(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """A later review (member view, finding 8): the outbox lists undelivered mails' links to admins. With
    an owner invitation and an owner's sign-in link waiting there, every link the admin is shown, used
    to accept, makes nobody an owner, and no sign-in link is shown at all (DESIGN 3.2: no power gained
    through a target). Passed when written: the outbox hides owner invitations' links from those
    without owners.manage, and every sign-in link."""
    owner = person(db, system, acme, "second-owner@acme.test", "owner", ["admin", "inference"])
    admin = person(db, system, acme, "admin@acme.test", "admin", ["admin", "inference"])
    for email, role in (("new-owner@acme.test", "owner"), ("new-member@acme.test", "member")):
        invited = client.post(f"/api/v1/orgs/{acme.org.slug}/invitations", headers=owner.headers,
                              json={"email": email, "role": role})
        assert invited.status_code == 201, invited.data
    with db.transaction() as session:
        assert links.request_sign_in_links(session, system, [acme.org.slug], "second-owner@acme.test",
                                           browser="b" * 32, client_address="127.0.0.1",
                                           base_url="http://localhost")
    mails = client.get(f"/api/v1/orgs/{acme.org.slug}/outbox", headers=admin.headers).get_json()["mails"]
    assert {m["kind"] for m in mails} > {"invitation"}  # the sign-in link's mail is listed, without its link
    shown = [m for m in mails if m["link"]]
    assert [m["to"] for m in shown] == ["new-member@acme.test"]  # the one invitation an admin may send
    for mail in shown:
        accepted = client.post("/api/v1/invitations/accept", json={"token": mail["link"].rsplit("/", 1)[1]})
        assert accepted.status_code == 201, accepted.data  # the link shown works: what it gives is a member
    with db.reading() as session:
        owners = {u.user_name for u in session.scalars(select(User).where(User.org_id == acme.org.id))
                  if org_role(session, u.id) == "owner"}
    assert "new-owner@acme.test" not in owners and "new-member@acme.test" not in owners
