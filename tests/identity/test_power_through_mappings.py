"""An admin acting on owners through the group-mapping rules (DESIGN.md 3.2, 3.3).

Admins manage group mappings "not to owner"; a rule that grants owner is IdP trust and the owners'
business. But which rule governs a group is decided by rank (identity.group_rules: the group's own
immutable id first, its display name as a fallback), so a rule an admin may make can take a group
away from the owners' rule that governs it, and the members that rule made owners stop being owners.
Acting on an owner (change role, remove from a team) needs `owners.manage`: an admin must not reach
it through a rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import groups, keys, mappings, orgs, teams, users
from identity.db import Database
from identity.orgs import NewOrg
from tests.factories import provision


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class Board:
    """Acme, whose IdP group `Owners` (immutable id 00gOwners) makes owners through the owners' rule."""

    admin: dict[str, str]  # an admin's API key headers
    owner_id: str  # a member the `Owners` group made an owner
    owners_rule: str


@pytest.fixture
def board(db: Database, system: Actor, acme: NewOrg) -> Board:
    """The owners' rule names the group by its display name, as Okta's groups are named (the README's
    example); the IdP pushes the group with its immutable id."""
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    bob = provision(db, system, acme.org.id, "bob@acme.test", source="scim")
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"idp_may_grant_owner": True})
        rule = mappings.create_mapping(session, system, acme.org.id, group_display_name="Owners", org_role="owner")
        groups.create_group(session, system, acme.org.id, display_name="Owners", external_id="00gOwners",
                            member_ids=[bob.id])
        key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin"])
    with db.reading() as session:
        assert users.org_role(session, bob.id) == "owner"
    return Board(bearer(key.secret), bob.id, rule.id)


def owner_role(db: Database, user_id: str) -> str | None:
    with db.reading() as session:
        return users.org_role(session, user_id)


def test_an_admin_may_not_demote_the_idps_owners_by_a_rule_of_the_groups_immutable_id(
        client: FlaskClient, db: Database, acme: NewOrg, board: Board) -> None:
    """The admin's rule names the `Owners` group by its immutable id and grants a team (no org role,
    nothing that looks like owner): it outranks the owners' rule, which no longer governs the group,
    and its member is no owner any more. What the admin may not do directly (change an owner's role:
    403) it may not do through a rule."""
    direct = client.patch(f"/api/v1/orgs/{acme.org.slug}/members/{board.owner_id}", json={"role": "member"},
                          headers=board.admin)
    assert direct.status_code == 403  # the direct way is refused
    response = client.post(f"/api/v1/orgs/{acme.org.slug}/group-mappings", headers=board.admin,
                           json={"group_external_id": "00gOwners", "team_id": acme.default_team_id})
    assert owner_role(db, board.owner_id) == "owner", (
        f"an admin's rule ({response.status_code}) took owner from a member the owners' rule made owner")
    assert response.status_code == 403


def test_an_admin_may_not_demote_the_idps_owners_by_editing_a_rule_onto_their_group(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, board: Board) -> None:
    """The same through PATCH: an existing rule of the admins' (a team for `Platform`) is pointed at
    the `Owners` group's immutable id."""
    with db.transaction() as session:
        platform = mappings.create_mapping(session, system, acme.org.id, group_display_name="Platform",
                                           team_id=acme.default_team_id)
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/group-mappings/{platform.id}", headers=board.admin,
                            json={"group_external_id": "00gOwners", "group_display_name": None})
    assert owner_role(db, board.owner_id) == "owner", (
        f"an admin's edited rule ({response.status_code}) took owner from a member the owners' rule made owner")
    assert response.status_code == 403


def test_an_admin_may_not_take_an_owner_out_of_a_team_by_editing_the_rule_that_put_them_there(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """Removing an owner from a team (which ends their keys for it) is refused to an admin (the matrix:
    `remove_from_team`, admin BELOW_OWNER; deleting a team holding an owner is refused too). Moving the
    rule that gave the owner the team elsewhere does the same: the owner's key for the team stops working."""
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with db.transaction() as session:
        prod = teams.create_team(session, system, acme.org.id, "Prod")
        other = teams.create_team(session, system, acme.org.id, "Other")
        rule = mappings.create_mapping(session, system, acme.org.id, group_external_id="00gProd", team_id=prod.id)
        groups.create_group(session, system, acme.org.id, display_name="Prod engineers", external_id="00gProd",
                            member_ids=[acme.owner.id])
        owners_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=prod.id,
                                         name="prod", scopes=["inference"])
        admin_key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id,
                                        team_id=acme.default_team_id, name="admin", scopes=["admin"])
    _refused_as_the_direct_way(client, acme, prod.id, owners_key.secret, admin_key.secret, "a rule edit",
                               f"group-mappings/{rule.id}", {"team_id": other.id})


def test_an_admin_may_not_take_an_owner_out_of_their_mirrored_team_by_switching_group_sync(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """The same end through the `group_sync` setting, which admins change: under `mirror` the IdP group
    `Prod engineers` (no rule) is the owner's team; switching to `mapped` takes every member out of it,
    the owner included, and the owner's key for it stops working."""
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    with db.transaction() as session:
        group = groups.create_group(session, system, acme.org.id, display_name="Prod engineers",
                                    external_id="00gProd", member_ids=[acme.owner.id])
        team_id = session.get(type(group), group.id).team_id
        owners_key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=team_id,
                                         name="prod", scopes=["inference"])
        admin_key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id,
                                        team_id=acme.default_team_id, name="admin", scopes=["admin"])
    _refused_as_the_direct_way(client, acme, team_id, owners_key.secret, admin_key.secret, "a switch of group_sync",
                               "settings", {"group_sync": "mapped"})


def test_a_mirrored_team_made_on_an_admins_change_has_no_creator_member(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg) -> None:
    """identity.teams.create_team: "a team made by the IdP (a mirrored group) ... has no creator member".
    When an admin's switch of `group_sync` to `mirror` makes the IdP group `Research` a team, the admin,
    who is in no such group, must not become that team's admin (a manual grant nobody asked for; the
    team role the gateway is told for their keys there)."""
    admin = provision(db, system, acme.org.id, "admin@acme.test", role="admin")
    dev = provision(db, system, acme.org.id, "dev@acme.test", source="scim")
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"group_sync": "mapped"})
        group = groups.create_group(session, system, acme.org.id, display_name="Research", external_id="00gR",
                                    member_ids=[dev.id])
        key = keys.create_api_key(session, system, acme.org.id, user_id=admin.id, team_id=acme.default_team_id,
                                  name="admin", scopes=["admin"])
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/settings", headers=bearer(key.secret),
                            json={"group_sync": "mirror"})
    assert response.status_code == 200
    with db.reading() as session:
        team_id = session.get(type(group), group.id).team_id
        assert team_id is not None
        assert users.team_roles(session, dev.id).get(team_id) == "member"
        assert team_id not in users.team_roles(session, admin.id), "the admin became the IdP team's admin"


def _refused_as_the_direct_way(client: FlaskClient, acme: NewOrg, team_id: str, owners_key: str, admin_key: str,
                               what: str, path: str, change: dict[str, str]) -> None:
    """The admin may not take the owner out of `team_id` directly (403); the PATCH of `path` with
    `change`, which would do it through the group rules, is refused too, and the owner's key for
    the team still works."""
    assert client.get("/api/v1/key", headers=bearer(owners_key)).status_code == 200
    direct = client.delete(f"/api/v1/orgs/{acme.org.slug}/teams/{team_id}/members/{acme.owner.id}",
                           headers=bearer(admin_key))
    assert direct.status_code == 403  # the direct way is refused
    response = client.patch(f"/api/v1/orgs/{acme.org.slug}/{path}", headers=bearer(admin_key), json=change)
    still = client.get("/api/v1/key", headers=bearer(owners_key))
    assert still.status_code == 200, (
        f"an admin's {what} ({response.status_code}) took the owner out of their team: their key answers "
        f"{still.status_code} {still.get_json()}")
    assert response.status_code == 403
