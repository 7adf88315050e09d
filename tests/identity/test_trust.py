"""The attacker's moves of issue 14 against the trust model, each refused, and what must still work."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from audit.log import pending_events
from identity import groups, keys, mappings, users
from identity.db import Database
from identity.errors import Conflict, PermissionDenied
from identity.orgs import NewOrg
from tests.factories import counts, provision


def _as(user_id: str, org: NewOrg, role: str) -> Actor:
    return Actor(type="user", id=user_id, display=role, org_id=org.org.id, role=role)


def test_an_admin_cannot_mint_a_key_for_the_owner_and_act_as_owner(db: Database, system: Actor,
                                                                  acme: NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    before = counts(db)
    with pytest.raises(PermissionDenied), db.transaction() as session:
        keys.create_api_key(session, _as(admin.id, acme, "admin"), acme.org.id, user_id=acme.owner.id,
                            team_id=acme.default_team_id, name="mine now", scopes=["admin"])
    assert counts(db) == before
    with db.transaction() as session:  # the owner still can, for anyone
        keys.create_api_key(session, _as(acme.owner.id, acme, "owner"), acme.org.id, user_id=admin.id,
                            team_id=acme.default_team_id, name="for the admin", scopes=["admin"])


def test_a_key_made_for_someone_names_its_maker_as_the_actor(db: Database, system: Actor, acme: NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    member = provision(db, system, acme.org.id, "member@acme.test")
    with db.transaction() as session:
        keys.create_api_key(session, _as(admin.id, acme, "admin"), acme.org.id, user_id=member.id,
                            team_id=acme.default_team_id, name="ci", scopes=["inference"])
        [event] = [e for e in pending_events(session) if e["action"] == "api_key.created"]
        assert (event["actor_type"], event["actor_id"]) == ("user", admin.id)


def test_a_key_carries_no_scope_above_its_holders_role(db: Database, system: Actor, acme: NewOrg) -> None:
    viewer = provision(db, system, acme.org.id, "viewer@acme.test", role="viewer")
    owner = _as(acme.owner.id, acme, "owner")
    with pytest.raises(PermissionDenied, match="admin"), db.transaction() as session:
        keys.create_api_key(session, owner, acme.org.id, user_id=viewer.id, team_id=acme.default_team_id,
                            name="too much", scopes=["admin"])
    with db.transaction() as session:
        keys.create_api_key(session, owner, acme.org.id, user_id=viewer.id, team_id=acme.default_team_id,
                            name="enough", scopes=["inference"])


def test_a_demoted_holder_keeps_only_the_scopes_of_the_new_role(db: Database, system: Actor, acme: NewOrg) -> None:
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                     name="admin key", scopes=["admin", "inference"])
    with db.transaction() as session:
        users.change_role(session, system, acme.org.id, admin.id, "viewer")
    with db.transaction() as session:  # it notes the key's use
        found = keys.verify_api_key(session, issued.secret)
    assert (found.role, found.scopes) == ("viewer", ("inference",))


@pytest.mark.parametrize("source", ["scim", "saml", "manual", "invitation"])
def test_a_demotion_gives_exactly_the_role_asked(db: Database, system: Actor, acme: NewOrg, source: str) -> None:
    """A member provisioned with the org's default role by the IdP is demoted for real (it stayed member)."""
    user = provision(db, system, acme.org.id, "dev@acme.test", source=source)
    with db.transaction() as session:
        assert users.change_role(session, _as(acme.owner.id, acme, "owner"), acme.org.id, user.id, "viewer") == "viewer"
    with db.reading() as session:
        assert users.org_role(session, user.id) == "viewer"
    with db.transaction() as session:  # and back up
        users.change_role(session, _as(acme.owner.id, acme, "owner"), acme.org.id, user.id, "admin")
    with db.reading() as session:
        assert users.org_role(session, user.id) == "admin"


def _admin_through_group(db: Database, system: Actor, acme: NewOrg) -> str:
    user = provision(db, system, acme.org.id, "lead@acme.test", source="scim")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Platform Leads", external_id="g-1",
                                    member_ids=[user.id])
        mappings.create_mapping(session, system, acme.org.id, group_external_id="g-1", org_role="admin")
        assert group.id
    with db.reading() as session:
        assert users.org_role(session, user.id) == "admin"
    return user.id


def test_a_demotion_below_what_a_group_grants_is_refused_naming_the_group(db: Database, system: Actor,
                                                                        acme: NewOrg) -> None:
    user_id = _admin_through_group(db, system, acme)
    before = counts(db)
    with pytest.raises(Conflict, match="Platform Leads") as refused, db.transaction() as session:
        users.change_role(session, _as(acme.owner.id, acme, "owner"), acme.org.id, user_id, "member")
    assert refused.value.context["group"] == "Platform Leads"
    assert counts(db) == before
    with db.reading() as session:
        assert users.org_role(session, user_id) == "admin"


def test_over_http_the_refused_demotion_is_409_naming_the_group(client: FlaskClient, db: Database, system: Actor,
                                                               acme: NewOrg) -> None:
    user_id = _admin_through_group(db, system, acme)
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="owner", scopes=["admin"])
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/members/{user_id}", json={"role": "viewer"},
                            headers={"Authorization": f"Bearer {key.secret}"})
    assert response.status_code == 409 and response.json["group"] == "Platform Leads"
    assert "Platform Leads" in response.json["detail"]
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/members/{user_id}", json={"role": "owner"},
                            headers={"Authorization": f"Bearer {key.secret}"})
    assert response.status_code == 200 and response.json["role"] == "owner"  # above the group: fine


def test_an_admin_cannot_make_a_sign_in_link_for_an_owner(db: Database, system: Actor, acme: NewOrg) -> None:
    from saml import links

    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with pytest.raises(PermissionDenied), db.transaction() as session:
        links.issue_sign_in_link(session, _as(admin.id, acme, "admin"), acme.org.id, "owner@acme.test")
    with db.transaction() as session:
        assert links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
