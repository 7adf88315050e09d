"""A key made (or rotated) for someone by another person is capped at its holder's role then (DESIGN.md 3.2):
promoting the holder does not lift a key whose secret its maker holds. Everywhere a key's role is read:
the admin API's caller, the gateway's key check (role and scopes), the audit log and its reconciliation.
A key its holder makes is not capped; its holder cannot lift a cap by rotating, nor by making a key
with the capped one. On both databases. The failing case itself: test_keys_made_for_someone_promoted.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient
from sqlalchemy import inspect, select, text, update

from audit import Actor
from audit.models import AuditEvent
from identity import gateway, keys, tokens, users
from identity.db import Database
from identity.migrate import downgrade, upgrade
from identity.models import ApiKey, User
from identity.orgs import NewOrg
from identity.reconcile import reconcile
from tests.factories import provision


@dataclass
class People:
    admin: Actor
    bob: User  # a member
    bob_self: Actor  # Bob, signed in


@pytest.fixture
def people(db: Database, system: Actor, acme: NewOrg) -> People:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    return People(Actor("user", admin.id, "admin", org_id=acme.org.id, role="admin"), bob,
                  Actor("user", bob.id, "bob", org_id=acme.org.id, role="member"))


def _make(db: Database, actor: Actor, acme: NewOrg, user_id: str, scopes: tuple[str, ...] = ("inference",)
          ) -> keys.Issued:
    with db.transaction() as session:
        return keys.create_api_key(session, actor, acme.org.id, user_id=user_id, team_id=acme.default_team_id,
                                   name="k", scopes=list(scopes))


def _rotate(db: Database, actor: Actor, acme: NewOrg, key_id: str) -> keys.Issued:
    with db.transaction() as session:
        return keys.rotate_api_key(session, actor, acme.org.id, key_id)


def _promote(db: Database, system: Actor, acme: NewOrg, user_id: str, role: str) -> None:
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, user_id, role)


def _verify(db: Database, secret: str) -> keys.KeyIdentity:
    with db.transaction() as session:
        return keys.verify_api_key(session, secret)


def _cap(db: Database, key_id: str) -> str | None:
    with db.reading() as session:
        return session.get_one(ApiKey, key_id).role_cap


def _created_event(db: Database, key_id: str) -> dict:
    with db.reading() as session:
        return session.scalars(select(AuditEvent.changes).where(
            AuditEvent.action == "api_key.created", AuditEvent.target_id == key_id)).one()


def test_a_key_made_for_a_member_by_an_admin_stays_a_members_key_at_the_gateway_and_the_admin_api(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, people: People) -> None:
    made = _make(db, people.admin, acme, people.bob.id, ("admin", "inference"))
    assert _cap(db, made.id) == "member"
    assert _created_event(db, made.id)["role_cap"] == "member"
    _promote(db, system, acme, people.bob.id, "owner")
    with db.transaction() as session:
        credential = gateway.create_credential(session, system).secret
    check = client.post("/api/v1/keys/verify", json={"key": made.secret},
                        headers={"Authorization": f"Bearer {credential}"}).get_json()
    assert (check["valid"], check["role"], check["scopes"]) == (True, "member", ["admin", "inference"])
    assert _verify(db, made.secret).role == "member"
    whoami = client.get("/api/v1/key", headers={"Authorization": f"Bearer {made.secret}"}).get_json()
    assert whoami["role"] == "member"
    listed = client.get(f"/api/v1/orgs/{acme.org.slug}/api-keys",
                        headers={"Authorization": f"Bearer {made.secret}"}).get_json()["keys"]
    assert [(k["id"], k["role_cap"]) for k in listed] == [(made.id, "member")]  # a member's list: their own


def test_a_key_its_holder_makes_has_no_cap_and_rises_with_them(db: Database, system: Actor, acme: NewOrg,
                                                               people: People) -> None:
    own = _make(db, people.bob_self, acme, people.bob.id, ("admin", "inference"))
    assert _cap(db, own.id) is None and _created_event(db, own.id)["role_cap"] is None
    _promote(db, system, acme, people.bob.id, "admin")
    assert _verify(db, own.secret).role == "admin"


def test_the_operator_makes_keys_without_a_cap(db: Database, system: Actor, acme: NewOrg, people: People) -> None:
    made = _make(db, system, acme, people.bob.id)
    _promote(db, system, acme, people.bob.id, "admin")
    assert _cap(db, made.id) is None and _verify(db, made.secret).role == "admin"


def test_its_holder_cannot_lift_a_cap_by_rotating(db: Database, system: Actor, acme: NewOrg, people: People) -> None:
    made = _make(db, people.admin, acme, people.bob.id)
    _promote(db, system, acme, people.bob.id, "owner")
    bob = Actor("user", people.bob.id, "bob", org_id=acme.org.id, role="owner")
    successor = _rotate(db, bob, acme, made.id)
    assert _cap(db, successor.id) == "member"
    assert _created_event(db, successor.id) == {
        "name": "k", "team_id": acme.default_team_id, "user_id": people.bob.id, "scopes": ["inference"],
        "rotated_from": made.id, "role_cap": "member",
        "hash_fingerprint": tokens.fingerprint(tokens.digest(successor.secret))}  # of the hash, never the secret
    assert _verify(db, successor.secret).role == "member"
    again = _rotate(db, _verify(db, successor.secret).actor(), acme, successor.id)  # with the key itself
    assert _cap(db, again.id) == "member" and _verify(db, again.secret).role == "member"


def test_a_capped_key_makes_and_rotates_only_capped_keys_for_its_holder(db: Database, system: Actor, acme: NewOrg,
                                                                        people: People) -> None:
    """The admin holds Bob's capped key; Bob is made owner. The key acts as Bob for his own keys, but what it
    makes or rotates, whose secret the admin is handed, is capped as the key is."""
    held = _make(db, people.admin, acme, people.bob.id, ("admin", "inference"))
    bobs_own = _make(db, people.bob_self, acme, people.bob.id, ("admin", "inference"))
    _promote(db, system, acme, people.bob.id, "owner")
    as_held = _verify(db, held.secret).actor()
    made = _make(db, as_held, acme, people.bob.id, ("admin",))
    rotated = _rotate(db, as_held, acme, bobs_own.id)
    assert (_cap(db, made.id), _cap(db, rotated.id)) == ("member", "member")
    assert (_verify(db, made.secret).role, _verify(db, rotated.secret).role) == ("member", "member")
    assert _verify(db, bobs_own.secret).role == "owner"  # Bob's own key, its grace running: his role


def test_a_rotation_by_someone_else_caps_at_the_holders_role_then_scopes_included(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, people: People) -> None:
    """An owner rotates Bob's uncapped key while Bob is a viewer and is handed the new secret: it stays a
    viewer's key, without the admin API, once Bob is an admin again."""
    owner = Actor("user", acme.owner.id, "owner", org_id=acme.org.id, role="owner")
    own = _make(db, people.bob_self, acme, people.bob.id, ("admin", "inference"))
    _promote(db, system, acme, people.bob.id, "viewer")
    successor = _rotate(db, owner, acme, own.id)
    assert _cap(db, successor.id) == "viewer" and _created_event(db, successor.id)["role_cap"] == "viewer"
    _promote(db, system, acme, people.bob.id, "admin")
    identity = _verify(db, successor.secret)
    assert (identity.role, identity.scopes) == ("viewer", ("inference",))
    with db.transaction() as session:
        credential = gateway.create_credential(session, system).secret
    check = client.post("/api/v1/keys/verify", json={"key": successor.secret},
                        headers={"Authorization": f"Bearer {credential}"}).get_json()
    assert (check["role"], check["scopes"]) == ("viewer", ["inference"])
    refused = client.get(f"/api/v1/orgs/{acme.org.slug}/members", headers={"Authorization": f"Bearer {successor.secret}"})
    assert refused.status_code == 403
    # Rotated again by the owner now that Bob is an admin: capped at admin.
    assert _cap(db, _rotate(db, owner, acme, successor.id).id) == "admin"


def test_a_cap_lifted_by_hand_is_found_by_reconciliation(db: Database, system: Actor, acme: NewOrg,
                                                         people: People) -> None:
    made = _make(db, people.admin, acme, people.bob.id)
    with db.reading() as session:
        assert reconcile(session, acme.org.id) == []
    with db.begin() as conn:
        conn.execute(update(ApiKey).where(ApiKey.id == made.id).values(role_cap=None))
    with db.reading() as session:
        found = reconcile(session, acme.org.id)
    assert [(f.kind, f.entity_id) for f in found] == [("api_key", made.id)]
    assert "role_cap is None, but the last event that set it, api_key.created" in found[0].problem


def test_0024_caps_the_keys_made_for_someone_else_and_goes_back(db_url: str, system: Actor) -> None:
    """Existing keys made by another person are capped at their holder's role now; a key its holder (or the
    operator) made is not, unless it is a rotation or a making through a capped key, which keeps the cap."""
    from identity import orgs

    db = Database(db_url)
    with db.transaction() as session:
        acme = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    bob = provision(db, system, acme.org.id, "bob@acme.test", role="member")
    carol = provision(db, system, acme.org.id, "carol@acme.test", role="viewer")
    as_admin = Actor("user", admin.id, "admin", org_id=acme.org.id, role="admin")
    as_bob = Actor("user", bob.id, "bob", org_id=acme.org.id, role="member")
    for_bob = _make(db, as_admin, acme, bob.id, ("admin", "inference"))
    for_carol = _make(db, as_admin, acme, carol.id)
    bobs_own = _make(db, as_bob, acme, bob.id)
    by_operator = _make(db, system, acme, bob.id)
    rotated_by_bob = _rotate(db, as_bob, acme, for_bob.id)
    through_capped = _make(db, _verify(db, rotated_by_bob.secret).actor(), acme, bob.id)
    expected = {for_bob.id: "member", for_carol.id: "viewer", bobs_own.id: None, by_operator.id: None,
                rotated_by_bob.id: "member", through_capped.id: "member",
                **{key_id: None for key_id in _key_ids(db, acme.owner.id)}}
    assert _caps(db) == expected
    db.dispose()

    downgrade(db_url, "0023")  # 0024's down_revision
    back = Database(db_url)
    assert "role_cap" not in {c["name"] for c in inspect(back.engine).get_columns("api_keys")}
    with back.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == len(expected)
    back.dispose()

    upgrade(db_url, "head")
    again = Database(db_url)
    assert _caps(again) == expected
    again.dispose()


def _key_ids(db: Database, user_id: str) -> list[str]:
    with db.reading() as session:
        return list(session.scalars(select(ApiKey.id).where(ApiKey.user_id == user_id)))


def _caps(db: Database) -> dict[str, str | None]:
    with db.engine.connect() as conn:
        return dict(conn.execute(text("SELECT id, role_cap FROM api_keys")).all())
