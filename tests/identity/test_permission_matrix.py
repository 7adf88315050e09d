"""Who may do what to whom (DESIGN.md 3.2), cell by cell, in the domain services.

The expected table is written out here from DESIGN.md's table, not read from identity.roles, so
that a change to the rule shows up as a failing cell. Every cell runs in a transaction that is
rolled back afterwards, so one org serves the whole matrix: an allowed cell must do its change
and audit it with the caller as actor; a refused cell must raise PermissionDenied. An owner of
another org is refused every cell.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor
from audit.log import pending_events
from identity import (
    charges,
    directory,
    invitations,
    keys,
    mappings,
    org_lifecycle,
    orgs,
    outbox,
    scim_credentials,
    teams,
    user_profile,
    users,
)
from identity.db import Database
from identity.errors import PermissionDenied
from identity.models import ApiKey, User
from identity.paging import Window
from saml import configuration as saml_configuration
from saml import identities, links
from saml.connection import IdpSettings
from saml.models import SamlIdentity

ROLES = ("owner", "admin", "member", "viewer")
ALL = frozenset(ROLES)
BELOW_OWNER = frozenset({"admin", "member", "viewer"})
BELOW_ADMIN = frozenset({"member", "viewer"})

# action on a member -> {actor role: target roles it may act on}. DESIGN.md 3.2, "Who may act on whom".
ON_MEMBER: dict[str, dict[str, frozenset[str]]] = {
    "deactivate": {"owner": ALL, "admin": BELOW_OWNER},
    "reactivate": {"owner": ALL, "admin": BELOW_OWNER},
    "delete": {"owner": ALL, "admin": BELOW_OWNER},
    "update_profile": {"owner": ALL, "admin": BELOW_OWNER},
    "demote_to_viewer": {"owner": ALL, "admin": BELOW_OWNER},
    "promote_to_owner": {"owner": ALL},
    "remove_from_team": {"owner": ALL, "admin": BELOW_OWNER},
    "revoke_their_key": {"owner": ALL, "admin": BELOW_OWNER},
    "rotate_their_key": {"owner": ALL, "admin": BELOW_ADMIN},  # the new secret is a key for them
    "create_key_for": {"owner": ALL, "admin": BELOW_ADMIN},
    "sign_in_link_for": {"owner": ALL, "admin": BELOW_ADMIN},
    "add_to_team": {"owner": ALL, "admin": BELOW_OWNER},
    "change_team_role": {"owner": ALL, "admin": BELOW_OWNER},
    "preview_team_removal": {"owner": ALL, "admin": BELOW_OWNER},
    "unlink_sso_identity": {"owner": ALL},  # IdP trust: which IdP identity signs in as them
}

# action on the org -> actor roles that may do it.
ON_ORG: dict[str, frozenset[str]] = {
    "create_scim_token": frozenset({"owner"}),
    "create_scim_client": frozenset({"owner"}),
    "revoke_scim_token": frozenset({"owner", "admin"}),
    "revoke_scim_client": frozenset({"owner", "admin"}),
    "let_idp_grant_owner": frozenset({"owner"}),
    "require_sso_setting": frozenset({"owner"}),
    "map_group_to_owner": frozenset({"owner"}),
    "map_group_to_admin": frozenset({"owner", "admin"}),
    "change_billing": frozenset({"owner"}),
    "change_default_role": frozenset({"owner", "admin"}),
    "invite_owner": frozenset({"owner"}),
    "invite_member": frozenset({"owner", "admin"}),
    "add_owner": frozenset({"owner"}),
    "add_member": frozenset({"owner", "admin"}),
    "create_team": frozenset({"owner", "admin"}),
    "create_own_key": frozenset({"owner", "admin", "member"}),
    "transfer_ownership": frozenset({"owner"}),
    "delete_org": frozenset({"owner"}),
    "read_seat_charges": frozenset({"owner", "admin"}),
    "edit_mapping_to_admin": frozenset({"owner", "admin"}),
    "edit_mapping_to_owner": frozenset({"owner"}),
    "rotate_own_key": frozenset({"owner", "admin", "member"}),
    "create_service_key": frozenset({"owner", "admin"}),
    "rotate_service_key": frozenset({"owner", "admin"}),
    "revoke_service_key": frozenset({"owner", "admin"}),
    "revoke_invitation": frozenset({"owner", "admin"}),
    "resend_invitation": frozenset({"owner", "admin"}),
    "revoke_owner_invitation": frozenset({"owner"}),
    "resend_owner_invitation": frozenset({"owner"}),
    "list_outbox": frozenset({"owner", "admin"}),
}


@dataclass
class World:
    """One org with a person of each role to act, one of each role to be acted on, and a rival org."""

    org_id: str
    team_id: str
    actors: dict[str, Actor]
    targets: dict[str, User]
    rival: Actor
    scim_token_id: str
    scim_client_id: str


def _person(session: Session, system: Actor, org_id: str, name: str, role: str) -> User:
    return users.provision_user(session, system, org_id, user_name=name, email=name, role=role, source="manual")


def _actor(user: User, role: str) -> Actor:
    return Actor(type="user", id=user.id, display=user.user_name, org_id=user.org_id, role=role)


@pytest.fixture
def world(db: Database, system: Actor) -> World:
    with db.transaction() as session:
        acme = orgs.create_org(session, system, "Acme", owner_email="first-owner@acme.test")
        rival = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        actors = {role: _actor(_person(session, system, acme.org.id, f"actor-{role}@acme.test", role), role)
                  for role in ROLES}
        targets = {role: _person(session, system, acme.org.id, f"target-{role}@acme.test", role) for role in ROLES}
        token = scim_credentials.create_scim_token(session, system, acme.org.id)
        client = scim_credentials.create_scim_client(session, system, acme.org.id)
        for user in targets.values():  # a key each, for the cells that revoke one
            keys.create_api_key(session, system, acme.org.id, user_id=user.id, team_id=acme.default_team_id,
                                name="theirs", scopes=["inference"])
        return World(acme.org.id, acme.default_team_id, actors, targets,
                     Actor(type="user", id=rival.owner.id, display="rival", org_id=rival.org.id, role="owner"),
                     token.id, client.id)


IDP = IdpSettings("https://idp.example.com/entity", "https://idp.example.com/sso", None, [])


def _with_sso(session: Session, world: World) -> None:
    """Configure the org's SAML SSO (as the system, whose events the cell does not judge): SSO may be
    required only once it is configured (identity.orgs)."""
    saml_configuration.configure_connection(session, Actor("system", "system", "tests"), world.org_id, IDP)


def _their_key(session: Session, user: User) -> str:
    return session.scalars(select(ApiKey.id).where(ApiKey.user_id == user.id)).one()


MemberAction = Callable[[Session, Actor, World, User, Actor], Any]

MEMBER_ACTIONS: dict[str, MemberAction] = {
    "deactivate": lambda s, a, w, t, sys: users.deactivate_user(s, a, w.org_id, t.id),
    "reactivate": lambda s, a, w, t, sys: (users.deactivate_user(s, sys, w.org_id, t.id),
                                           users.reactivate_user(s, a, w.org_id, t.id)),
    "delete": lambda s, a, w, t, sys: users.delete_user(s, a, w.org_id, t.id),
    "update_profile": lambda s, a, w, t, sys: user_profile.update_profile(s, a, w.org_id, t.id,
                                                                   {"email": "attacker@evil.test"}),
    "demote_to_viewer": lambda s, a, w, t, sys: users.change_role(s, a, w.org_id, t.id, "viewer"),
    "promote_to_owner": lambda s, a, w, t, sys: users.change_role(s, a, w.org_id, t.id, "owner"),
    "remove_from_team": lambda s, a, w, t, sys: teams.remove_team_member(s, a, w.org_id, w.team_id, t.id),
    "revoke_their_key": lambda s, a, w, t, sys: keys.revoke_api_key(s, a, w.org_id, _their_key(s, t)),
    "rotate_their_key": lambda s, a, w, t, sys: keys.rotate_api_key(s, a, w.org_id, _their_key(s, t),
                                                                    grace_seconds=60),
    "create_key_for": lambda s, a, w, t, sys: keys.create_api_key(s, a, w.org_id, user_id=t.id, team_id=w.team_id,
                                                                  name="for them", scopes=["inference"]),
    "sign_in_link_for": lambda s, a, w, t, sys: links.issue_sign_in_link(s, a, w.org_id, t.user_name),
    "add_to_team": lambda s, a, w, t, sys: teams.add_team_member(s, a, w.org_id, w.team_id, t.id, "admin"),
    "change_team_role": lambda s, a, w, t, sys: teams.change_team_role(s, a, w.org_id, w.team_id, t.id, "viewer"),
    "preview_team_removal": lambda s, a, w, t, sys: teams.removal_preview(s, a, w.org_id, w.team_id, t.id),
    "unlink_sso_identity": lambda s, a, w, t, sys: (link_identity(s, w.org_id, t.id),
                                                    identities.unlink_identities(s, a, w.org_id, t.id)),
}


def link_identity(session: Session, org_id: str, user_id: str) -> None:
    """Link the member to a NameID of the IdP, as a first sign-in would (no event: the cell judges its own)."""
    session.add(SamlIdentity(org_id=org_id, idp_entity_id=IDP.entity_id, name_id_key=f"p-{user_id}",
                             name_id=f"P-{user_id}", user_id=user_id, created_at=dt.datetime.now(dt.UTC)))
    session.flush()

OrgAction = Callable[[Session, Actor, World], Any]

ORG_ACTIONS: dict[str, OrgAction] = {
    "create_scim_token": lambda s, a, w: scim_credentials.create_scim_token(s, a, w.org_id),
    "create_scim_client": lambda s, a, w: scim_credentials.create_scim_client(s, a, w.org_id),
    "revoke_scim_token": lambda s, a, w: scim_credentials.revoke_scim_token(s, a, w.org_id, w.scim_token_id),
    "revoke_scim_client": lambda s, a, w: scim_credentials.revoke_scim_client(s, a, w.org_id, w.scim_client_id),
    "let_idp_grant_owner": lambda s, a, w: orgs.update_settings(s, a, w.org_id, {"idp_may_grant_owner": True}),
    "require_sso_setting": lambda s, a, w: (_with_sso(s, w), orgs.update_settings(s, a, w.org_id,
                                                                                  {"require_sso": True})),
    "map_group_to_owner": lambda s, a, w: mappings.create_mapping(s, a, w.org_id, group_display_name="Owners",
                                                                org_role="owner"),
    "map_group_to_admin": lambda s, a, w: mappings.create_mapping(s, a, w.org_id, group_display_name="Admins",
                                                                org_role="admin"),
    "change_billing": lambda s, a, w: orgs.update_settings(s, a, w.org_id, {"included_seats": 50}),
    "change_default_role": lambda s, a, w: orgs.update_settings(s, a, w.org_id, {"default_role": "viewer"}),
    "invite_owner": lambda s, a, w: invitations.invite(s, a, w.org_id, email="new@acme.test", role="owner"),
    "invite_member": lambda s, a, w: invitations.invite(s, a, w.org_id, email="new@acme.test", role="member"),
    "add_owner": lambda s, a, w: users.provision_user(s, a, w.org_id, user_name="new@acme.test", role="owner",
                                                      source="manual"),
    "add_member": lambda s, a, w: users.provision_user(s, a, w.org_id, user_name="new@acme.test", role="member",
                                                       source="manual"),
    "create_team": lambda s, a, w: teams.create_team(s, a, w.org_id, "Research"),
    "create_own_key": lambda s, a, w: keys.create_api_key(s, a, w.org_id, user_id=a.id, team_id=w.team_id,
                                                          name="mine", scopes=["inference"]),
    "transfer_ownership": lambda s, a, w: org_lifecycle.transfer_ownership(s, a, w.org_id, w.targets["member"].id),
    "delete_org": lambda s, a, w: org_lifecycle.delete_org(s, a, w.org_id, confirm="acme"),
    "read_seat_charges": lambda s, a, w: charges.seat_charges(s, a, w.org_id, limit=10),
    "edit_mapping_to_admin": lambda s, a, w: mappings.update_mapping(s, a, w.org_id, _mapping(s, w), {"org_role": "admin"}),
    "edit_mapping_to_owner": lambda s, a, w: mappings.update_mapping(s, a, w.org_id, _mapping(s, w), {"org_role": "owner"}),
    "rotate_own_key": lambda s, a, w: keys.rotate_api_key(s, a, w.org_id, _own_key(s, a, w)),
    "create_service_key": lambda s, a, w: keys.create_service_key(s, a, w.org_id, team_id=w.team_id, name="ci",
                                                                  scopes=["inference"]),
    "rotate_service_key": lambda s, a, w: keys.rotate_api_key(s, a, w.org_id, _service_key(s, w)),
    "revoke_service_key": lambda s, a, w: keys.revoke_api_key(s, a, w.org_id, _service_key(s, w)),
}


def _mapping(session: Session, world: World) -> str:
    """A rule made by the system (whose events the cell does not judge), for the cell to edit."""
    return mappings.create_mapping(session, Actor("system", "system", "tests"), world.org_id,
                                 group_display_name="Editable", org_role="viewer").id


def _own_key(session: Session, actor: Actor, world: World) -> str:
    """A key of the actor's own (made by the system; a rival is given an acme member's key to try)."""
    holder = actor.id if actor.org_id == world.org_id else next(iter(world.targets.values())).id
    return keys.create_api_key(session, Actor("system", "system", "tests"), world.org_id, user_id=holder,
                               team_id=world.team_id, name="own", scopes=["inference"]).id


def _service_key(session: Session, world: World) -> str:
    return keys.create_service_key(session, Actor("system", "system", "tests"), world.org_id, team_id=world.team_id,
                                   name="svc", scopes=["inference"]).id
def _invitation(session: Session, w: World, role: str = "member") -> str:
    """A pending invitation of the org, made by the system (whose events the cell does not judge)."""
    found, _ = invitations.invite(session, Actor("system", "system", "tests"), w.org_id,
                                  email=f"invited-{role}@acme.test", role=role)
    return found.id


ORG_ACTIONS.update({
    "revoke_invitation": lambda s, a, w: invitations.revoke(s, a, w.org_id, _invitation(s, w)),
    "resend_invitation": lambda s, a, w: invitations.resend(s, a, w.org_id, _invitation(s, w)),
    "revoke_owner_invitation": lambda s, a, w: invitations.revoke(s, a, w.org_id, _invitation(s, w, "owner")),
    "resend_owner_invitation": lambda s, a, w: invitations.resend(s, a, w.org_id, _invitation(s, w, "owner")),
})


class Undo(Exception):
    """Raised inside a cell's transaction to roll it back once the cell has been judged."""


def _attempt(db: Database, org_id: str, actor: Actor, call: Callable[[Session], Any], *, noop: bool = False) -> str:
    """Run one cell and roll it back: 'allowed' (its events' actor checked) or 'refused'."""
    try:
        with db.transaction() as session:
            call(session)
            actors = {event["actor_id"] for event in pending_events(session)
                      if event["org_id"] == org_id and event["actor_type"] != "system"}
            assert actors == (set() if noop else {actor.id}), "a change is audited with the caller as its actor"
            raise Undo
    except Undo:
        return "allowed"
    except PermissionDenied:
        return "refused"


# Cells that change nothing when allowed, so write no event.
NOOPS = {("demote_to_viewer", "viewer"), ("promote_to_owner", "owner"),
         *(("preview_team_removal", role) for role in ROLES)}
ORG_NOOPS = {"read_seat_charges", "list_outbox"}  # reads


def _list_outbox(s: Session, a: Actor, w: World) -> Any:
    return outbox.list_outbox(s, a, w.org_id)


ORG_ACTIONS["list_outbox"] = _list_outbox


def test_the_tables_cover_every_action() -> None:
    assert set(MEMBER_ACTIONS) == set(ON_MEMBER) and set(ORG_ACTIONS) == set(ON_ORG)


@pytest.mark.parametrize("action", sorted(ON_MEMBER))
def test_actions_on_members(db: Database, world: World, system: Actor, action: str) -> None:
    got, want = {}, {}
    for actor_role, actor in world.actors.items():
        for target_role, target in world.targets.items():
            want[actor_role, target_role] = ("allowed" if target_role in ON_MEMBER[action].get(actor_role, ())
                                             else "refused")
            got[actor_role, target_role] = _attempt(
                db, world.org_id, actor, lambda s, a=actor, t=target: MEMBER_ACTIONS[action](s, a, world, t, system),
                noop=(action, target_role) in NOOPS)
    for target_role, target in world.targets.items():
        want["rival", target_role] = "refused"
        got["rival", target_role] = _attempt(
            db, world.org_id, world.rival, lambda s, t=target: MEMBER_ACTIONS[action](s, world.rival, world, t, system))
    assert got == want


@pytest.mark.parametrize("action", sorted(ON_ORG))
def test_actions_on_the_org(db: Database, world: World, action: str) -> None:
    got = {role: _attempt(db, world.org_id, actor, lambda s, a=actor: ORG_ACTIONS[action](s, a, world),
                          noop=action in ORG_NOOPS)
           for role, actor in {**world.actors, "rival": world.rival}.items()}
    assert got == {role: "allowed" if role in ON_ORG[action] else "refused" for role in (*ROLES, "rival")}


# What each role reads of the org's settings (DESIGN.md 3.2): billing ("view billing, seats") and
# IdP trust ("read" for admins) only owners and admins; the directory's own settings everyone.
BILLING = frozenset({"included_seats", "seat_price_cents", "max_seats"})
IDP_TRUST = frozenset({"idp_may_grant_owner", "require_sso", "audit_retention_days"})
DIRECTORY = frozenset({"default_role", "group_sync"})
READS_SETTINGS = {"owner": BILLING | IDP_TRUST | DIRECTORY, "admin": BILLING | IDP_TRUST | DIRECTORY,
                  "member": DIRECTORY, "viewer": DIRECTORY}


def test_each_role_reads_only_the_settings_its_row_allows(db: Database, world: World) -> None:
    with db.reading() as session:
        got = {role: set(directory.org_settings(session, actor, world.org_id)) for role, actor in world.actors.items()}
    assert got == READS_SETTINGS


def test_only_who_reads_idp_trust_reads_the_mappings_that_grant_owner(db: Database, system: Actor,
                                                                      world: World) -> None:
    """"Mappings that grant owner" are IdP trust (DESIGN.md 3.2): the IdP group that makes owners is the
    one to get into. Members still read the other rules (teams are theirs to read), a full page of them."""
    with db.transaction() as session:
        orgs.update_settings(session, system, world.org_id, {"idp_may_grant_owner": True})
        rules = {role: mappings.create_mapping(session, system, world.org_id, group_external_id=f"group-{role}",
                                               org_role=role).id for role in ROLES}
        rules["team"] = mappings.create_mapping(session, system, world.org_id, group_external_id="group-team",
                                                team_id=world.team_id, team_role="member").id
    with db.reading() as session:
        got = {role: {rule.id for rule in directory.list_group_mappings(session, actor, world.org_id)}
               for role, actor in world.actors.items()}
        first = directory.list_group_mappings(session, world.actors["member"], world.org_id, Window(3))
    every, below_owner = set(rules.values()), set(rules.values()) - {rules["owner"]}
    assert got == {"owner": every, "admin": every, "member": below_owner, "viewer": below_owner}
    assert len(first) == 3 + 1 and rules["owner"] not in {rule.id for rule in first}  # the page, and one more
