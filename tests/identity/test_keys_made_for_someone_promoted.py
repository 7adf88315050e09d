"""A key made for someone else, then its holder promoted above its maker (DESIGN.md 3.2).

"A key for another user may be made only by someone who outranks that user": an admin makes keys for
members (a CI job's), and is shown the secret once. A key's role is read when it is used, which takes
a demotion into account at once; but a promotion takes the key, whose secret its maker still holds,
above its maker: the admin then acts as an owner (or as a peer admin), which the rule exists to stop
and which rotating such a key, or making one for an owner, is refused for.
"""

from __future__ import annotations

from flask.testing import FlaskClient

from audit import Actor
from identity import keys, org_lifecycle
from identity.db import Database
from identity.models import Org
from identity.orgs import NewOrg
from tests.factories import provision


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _admin(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin"])
    return bearer(key.secret)


def test_an_admin_does_not_act_as_owner_with_a_key_it_made_for_a_member_later_made_owner(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    admin = _admin(db, system, acme)
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    made = client.post(f"/api/v1/orgs/{acme.org.slug}/api-keys", headers=admin,
                       json={"user_id": bob.id, "team_id": acme.default_team_id, "name": "bob's CI",
                             "scopes": ["admin", "inference"]})
    assert made.status_code == 201  # the admin outranks a member: allowed, and the admin holds the secret
    held_by_admin = bearer(made.get_json()["key"])
    assert client.patch(f"/api/v1/orgs/{acme.org.slug}/settings", headers=admin,
                        json={"included_seats": 50}).status_code == 403  # billing is the owners'
    with db.transaction() as session:  # the owner hands the org over to Bob
        org_lifecycle.transfer_ownership(session, system, acme.org.id, bob.id, from_user_id=acme.owner.id)
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/settings", headers=held_by_admin,
                            json={"included_seats": 50})
    with db.reading() as session:
        seats = session.get_one(Org, acme.org.id).included_seats
    assert seats != 50, "an admin changed the owners' billing with the key it made for a member now owner"
    assert response.status_code in (401, 403)


def test_an_admin_does_not_hold_a_peer_admins_key_by_making_it_then_promoting_its_holder(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """Making a key for a peer admin, or rotating one (which hands over the new secret), is refused to an
    admin (tests/identity/test_power_through_targets.py). Make the key while its holder is a member, then
    promote the holder to admin (both allowed to an admin), and the admin holds a working key of a peer
    admin all the same, its acts audited as the other admin's key."""
    admin = _admin(db, system, acme)
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    made = client.post(f"/api/v1/orgs/{acme.org.slug}/api-keys", headers=admin,
                       json={"user_id": bob.id, "team_id": acme.default_team_id, "scopes": ["admin"]})
    assert made.status_code == 201
    promoted = client.patch(f"/api/v1/orgs/{acme.org.slug}/members/{bob.id}", headers=admin, json={"role": "admin"})
    assert promoted.status_code == 200
    whoami = client.get("/api/v1/key", headers=bearer(made.get_json()["key"]))
    assert whoami.status_code == 401 or whoami.get_json()["role"] not in ("admin", "owner"), (
        f"an admin holds a working key of a peer admin: {whoami.get_json()}")
