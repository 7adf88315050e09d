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
from werkzeug.test import TestResponse

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


@dataclass(frozen=True)
class Unpushed:
    """A change of the rules an admin asks before the IdP pushes the group an owners' rule names.

    `rules`: made by the owners, oldest first (a `team_id` of "default": the Default team); the
    change (`method`; `rule`: the index of the rule it addresses, None for a new one; `change`: its
    JSON), then the IdP pushes `group` with a member, who is an owner (`owner`) or not as the
    owners' rules say."""

    rules: tuple[dict[str, str], ...]
    method: str
    rule: int | None
    change: dict[str, str | None]
    group: dict[str, str | None]
    owner: bool


OWNERS_BY_NAME = {"group_display_name": "Owners", "org_role": "owner"}
OWNERS_BY_ID = {"group_external_id": "00gOwners", "group_display_name": "Owners", "org_role": "owner"}
PUSHED = {"display_name": "Owners", "external_id": "00gOwners"}
UNPUSHED = {
    # the admin's rule of the group's immutable id outranks the owners' rule of its display name
    "a new rule of the group's id and name": Unpushed(
        (OWNERS_BY_NAME,), "post", None,
        {"group_external_id": "00gOwners", "group_display_name": "Owners", "team_id": "default"}, PUSHED, True),
    # Okta pushes groups without an immutable id: a rule of the name alone outranks a rule naming an id
    "a new rule of the name, the group pushed without an id": Unpushed(
        (OWNERS_BY_ID,), "post", None, {"group_display_name": "OWNERS", "team_id": "default"},
        {"display_name": "Owners", "external_id": None}, True),
    # the same rank as the owners' rule of the group's id, and older: it governs
    "an older rule edited onto the owners' rule's id": Unpushed(
        ({"group_display_name": "Platform", "team_id": "default"}, OWNERS_BY_ID), "patch", 0,
        {"group_external_id": "00gOwners", "group_display_name": None}, PUSHED, True),
    # the owners keep the group's members out of the owner role by a rule of its id; deleting it hands
    # the group to the owners' rule of its name
    "deleting the owners' team rule that outranks their owner rule": Unpushed(
        (OWNERS_BY_NAME, {"group_external_id": "00gOwners", "group_display_name": "Owners", "team_id": "default"}),
        "delete", 1, {}, PUSHED, False),
}


def _unpushed(db: Database, system: Actor, acme: NewOrg, case: Unpushed, role: str) -> tuple[str, str, list[str]]:
    """Acme with `case.rules` (each in its own transaction: rules rank by age) and no group yet; return
    the member the IdP will push, the secret of an API key of a `role` and the rules' ids."""
    actor = acme.owner if role == "owner" else provision(db, system, acme.org.id, f"{role}@acme.test", role=role)
    member = provision(db, system, acme.org.id, "bob@acme.test", source="scim")
    with db.transaction() as session:
        orgs.update_settings(session, system, acme.org.id, {"idp_may_grant_owner": True})
        key = keys.create_api_key(session, system, acme.org.id, user_id=actor.id, team_id=acme.default_team_id,
                                  name=role, scopes=["admin"])
    rule_ids = []
    for rule in case.rules:
        with db.transaction() as session:
            made = mappings.create_mapping(session, system, acme.org.id, **{
                name: acme.default_team_id if value == "default" else value for name, value in rule.items()})
            rule_ids.append(made.id)
    return member.id, key.secret, rule_ids


def _change(client: FlaskClient, acme: NewOrg, case: Unpushed, secret: str, rule_ids: list[str]) -> TestResponse:
    path = f"/api/v1/orgs/{acme.org.slug}/group-mappings"
    path += f"/{rule_ids[case.rule]}" if case.rule is not None else ""
    change = {name: acme.default_team_id if value == "default" else value for name, value in case.change.items()}
    return client.open(path, method=case.method.upper(), headers=bearer(secret),
                       json=change if case.method != "delete" else None)


def _push(db: Database, system: Actor, acme: NewOrg, case: Unpushed, member_id: str) -> None:
    with db.transaction() as session:
        groups.create_group(session, system, acme.org.id, display_name=case.group["display_name"] or "",
                            external_id=case.group["external_id"], member_ids=[member_id])


@pytest.mark.parametrize("case", UNPUSHED.values(), ids=UNPUSHED.keys())
def test_an_admin_may_not_change_the_owners_group_rules_before_the_idp_pushes_it(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, case: Unpushed) -> None:
    """Before the IdP pushes the group the owners' rule names there is no IdP group yet whose rule
    could be the owners' (mappings._authorize_owners_groups): an admin's change of a rule naming the
    same immutable id or display name would decide, once the group comes, whether its members are
    owners. It is refused as the same change is once the group exists (403, the same problem), and
    the members the IdP pushes then are owners or not as the owners' rules say."""
    member_id, admin, rule_ids = _unpushed(db, system, acme, case, "admin")
    response = _change(client, acme, case, admin, rule_ids)
    _push(db, system, acme, case, member_id)
    assert owner_role(db, member_id) == ("owner" if case.owner else "member"), (
        f"an admin's change ({response.status_code}) before the IdP pushed the group decided who is an owner")
    pushed = _change(client, acme, case, admin, rule_ids)
    assert pushed.status_code == 403
    assert response.status_code == 403
    assert _problem(response) == _problem(pushed)


def _problem(response: TestResponse) -> dict[str, object]:
    return {name: value for name, value in response.get_json().items() if name != "request_id"}


@pytest.mark.parametrize("case", UNPUSHED.values(), ids=UNPUSHED.keys())
def test_an_owner_may_change_the_owners_group_rules_before_the_idp_pushes_it(
        client: FlaskClient, db: Database, system: Actor, acme: NewOrg, case: Unpushed) -> None:
    """The same changes are the owners' to make: an owner's succeed, and decide the pushed group."""
    member_id, owner, rule_ids = _unpushed(db, system, acme, case, "owner")
    response = _change(client, acme, case, owner, rule_ids)
    assert response.status_code in (200, 201, 204), response.get_json()
    _push(db, system, acme, case, member_id)
    assert owner_role(db, member_id) == ("member" if case.owner else "owner")


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
