"""The permission matrix over HTTP: the admin API with each role's API key, and another org's key;
then the same cells again through the other way in, each role's signed-in browser session (its
cookie and its CSRF header), and another org's session.

The same expected tables as the domain's matrix (tests/identity/test_permission_matrix.py).
Each cell acts on a target made for it, so an allowed cell's change cannot spoil the next; a
refused cell must answer 403 or 404 as problem JSON and leave every table as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from audit import Actor
from identity import invitations, keys, mappings, orgs, scim_credentials, sessions, users
from identity.db import Database
from identity.models import User
from identity.vocabulary import SessionMethod
from identity.web import cookies
from saml import configuration as saml_configuration
from saml import csrf
from saml.models import SamlConnection
from tests.factories import counts
from tests.identity.test_permission_matrix import (
    IDP,
    ON_MEMBER,
    ON_ORG,
    READS_SETTINGS,
    ROLES,
    link_identity,
)

ALLOWED = {200, 201, 204}
Headers = dict[str, str]
SECRET_KEY = "test-secret-key-32-characters-min"  # the `app` fixture's


@dataclass
class Org:
    slug: str
    org_id: str
    team_id: str
    keys: dict[str, Headers]  # role -> its credential's headers (an API key's, or a session's cookie and CSRF token)
    rival: Headers  # another org owner's
    rival_slug: str


def session_headers(session: Any, user_id: str) -> Headers:
    """Sign `user_id` in (as SAML sign-in would) and return what their browser sends on a write."""
    token = sessions.create_session(session, session.get_one(User, user_id), method=SessionMethod.SAML,
                                    lifetime=sessions.Lifetime())
    return {"Cookie": f"{cookies.COOKIE}={cookies.cookie_value(SECRET_KEY, token)}",
            "X-CSRF-Token": csrf.token(SECRET_KEY, "api", token)}


def _member_with_key(session: Any, system: Actor, org_id: str, team_id: str, name: str, role: str,
                     scopes: list[str]) -> tuple[str, str, str]:
    user = users.provision_user(session, system, org_id, user_name=name, email=name, role=role, source="manual")
    key = keys.create_api_key(session, system, org_id, user_id=user.id, team_id=team_id, name=name, scopes=scopes)
    return user.id, key.id, f"Bearer {key.secret}"


def _scopes(role: str) -> list[str]:
    return ["inference"] if role == "viewer" else ["admin", "inference"]  # a viewer may not hold `admin`


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A client without a cookie jar: each request sends the cookie its actor's headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture(params=["key", "session"])
def org(request: pytest.FixtureRequest, db: Database, system: Actor) -> Org:
    """Acme with a member of each role, and Globex's owner; each acts with their key, or signed in."""
    def credential(session: Any, made: tuple[str, str, str]) -> Headers:
        user_id, _, key = made
        return {"Authorization": key} if request.param == "key" else session_headers(session, user_id)

    with db.transaction() as session:
        acme = orgs.create_org(session, system, "Acme", owner_email="first-owner@acme.test")
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
        headers = {role: credential(session, _member_with_key(session, system, acme.org.id, acme.default_team_id,
                                                              f"actor-{role}@acme.test", role, _scopes(role)))
                   for role in ROLES}
        rival = credential(session, _member_with_key(session, system, globex.org.id, globex.default_team_id,
                                                     "rival@globex.test", "owner", ["admin"]))
    return Org(acme.org.slug, acme.org.id, acme.default_team_id, headers, rival, globex.org.slug)


@dataclass
class Target:
    user_id: str
    key_id: str


Request = tuple[str, str, dict[str, Any] | None]
MEMBER_REQUESTS: dict[str, Callable[[Org, Target], Request]] = {
    "deactivate": lambda o, t: ("PATCH", f"/members/{t.user_id}", {"active": False}),
    "reactivate": lambda o, t: ("PATCH", f"/members/{t.user_id}", {"active": True}),
    "delete": lambda o, t: ("DELETE", f"/members/{t.user_id}", None),
    "demote_to_viewer": lambda o, t: ("PATCH", f"/members/{t.user_id}", {"role": "viewer"}),
    "promote_to_owner": lambda o, t: ("PATCH", f"/members/{t.user_id}", {"role": "owner"}),
    "revoke_their_key": lambda o, t: ("DELETE", f"/api-keys/{t.key_id}", None),
    "rotate_their_key": lambda o, t: ("POST", f"/api-keys/{t.key_id}/rotate", {"grace_seconds": 60}),
    "create_key_for": lambda o, t: ("POST", "/api-keys", {"user_id": t.user_id, "team_id": o.team_id,
                                                          "scopes": ["inference"]}),
    "remove_from_team": lambda o, t: ("DELETE", f"/teams/{o.team_id}/members/{t.user_id}", None),
    "add_to_team": lambda o, t: ("POST", f"/teams/{o.team_id}/members", {"user_id": t.user_id, "role": "admin"}),
    "change_team_role": lambda o, t: ("PATCH", f"/teams/{o.team_id}/members/{t.user_id}", {"role": "viewer"}),
    "preview_team_removal": lambda o, t: ("GET", f"/teams/{o.team_id}/members/{t.user_id}/removal", None),
    "unlink_sso_identity": lambda o, t: ("DELETE", f"/members/{t.user_id}/sso-identities", None),
}
def _scim_token(db: Database, system: Actor, org: Org) -> str:
    with db.transaction() as session:
        return scim_credentials.create_scim_token(session, system, org.org_id).id


def _service_key(db: Database, system: Actor, org: Org) -> str:
    with db.transaction() as session:
        return keys.create_service_key(session, system, org.org_id, team_id=org.team_id, name="svc",
                                       scopes=["inference"]).id


def _with_sso(db: Database, system: Actor, org: Org) -> None:
    """Configure the org's SAML SSO once: SSO may be required only once it is configured (identity.orgs)."""
    with db.transaction() as session:
        if session.get(SamlConnection, org.org_id) is None:
            saml_configuration.configure_connection(session, system, org.org_id, IDP)


# action -> the request of one actor (named by `who`, so that each allowed cell makes a new thing).
OrgRequest = Callable[[Database, Actor, Org, str], Request]
ORG_REQUESTS: dict[str, OrgRequest] = {
    "create_scim_token": lambda d, s, o, who: ("POST", "/scim-tokens", {"name": f"okta {who}"}),
    "revoke_scim_token": lambda d, s, o, who: ("DELETE", f"/scim-tokens/{_scim_token(d, s, o)}", None),
    "let_idp_grant_owner": lambda d, s, o, who: ("PATCH", "/settings", {"idp_may_grant_owner": True}),
    "require_sso_setting": lambda d, s, o, who: (_with_sso(d, s, o), ("PATCH", "/settings", {"require_sso": True}))[1],
    "map_group_to_owner": lambda d, s, o, who: ("POST", "/group-mappings",
                                                {"group_display_name": f"Owners {who}", "org_role": "owner"}),
    "map_group_to_admin": lambda d, s, o, who: ("POST", "/group-mappings",
                                                {"group_display_name": f"Admins {who}", "org_role": "admin"}),
    "change_billing": lambda d, s, o, who: ("PATCH", "/settings", {"included_seats": 50}),
    "change_default_role": lambda d, s, o, who: ("PATCH", "/settings", {"default_role": "viewer"}),
    "invite_owner": lambda d, s, o, who: ("POST", "/invitations", {"email": f"owner-{who}@acme.test", "role": "owner"}),
    "invite_member": lambda d, s, o, who: ("POST", "/invitations", {"email": f"member-{who}@acme.test"}),
    "add_owner": lambda d, s, o, who: ("POST", "/members", {"email": f"owner-{who}@acme.test", "role": "owner"}),
    "add_member": lambda d, s, o, who: ("POST", "/members", {"email": f"member-{who}@acme.test", "role": "member"}),
    "create_team": lambda d, s, o, who: ("POST", "/teams", {"name": f"Research {who}"}),
    "create_own_key": lambda d, s, o, who: ("POST", "/api-keys", {"name": "mine", "scopes": ["inference"]}),
    "create_service_key": lambda d, s, o, who: ("POST", "/service-keys", {"name": f"ci {who}", "team_id": o.team_id}),
    "rotate_service_key": lambda d, s, o, who: ("POST", f"/api-keys/{_service_key(d, s, o)}/rotate", {}),
    "revoke_service_key": lambda d, s, o, who: ("DELETE", f"/api-keys/{_service_key(d, s, o)}", None),
}
def _member(db: Database, system: Actor, org: Org, who: str) -> str:
    with db.transaction() as session:
        return users.provision_user(session, system, org.org_id, user_name=f"heir-{who}@acme.test",
                                    source="manual").id


def _mapping(db: Database, system: Actor, org: Org) -> str:
    with db.transaction() as session:
        return mappings.create_mapping(session, system, org.org_id, group_display_name="Editable",
                                     org_role="viewer").id


# Issue 16. `delete_org` is not a cell here: the owner's allowed cell would revoke every key the
# cells after it use (tests/identity/test_org_lifecycle.py refuses it to an admin over HTTP).
def _invitation(d: Database, s: Actor, o: Org, role: str = "member") -> str:
    with d.transaction() as session:
        return invitations.invite(session, s, o.org_id, email=f"invited-{uuid.uuid4().hex[:8]}@acme.test",
                                  role=role)[0].id


ORG_REQUESTS.update({
    "transfer_ownership": lambda d, s, o, who: ("POST", "/transfer-ownership", {"user_id": _member(d, s, o, who)}),
    "read_seat_charges": lambda d, s, o, who: ("GET", "/seat-charges", None),
    "edit_mapping_to_admin": lambda d, s, o, who: ("PATCH", f"/group-mappings/{_mapping(d, s, o)}",
                                                   {"org_role": "admin"}),
    "edit_mapping_to_owner": lambda d, s, o, who: ("PATCH", f"/group-mappings/{_mapping(d, s, o)}",
                                                   {"org_role": "owner"}),
    "revoke_invitation": lambda d, s, o, who: ("DELETE", f"/invitations/{_invitation(d, s, o)}", None),
    "resend_invitation": lambda d, s, o, who: ("POST", f"/invitations/{_invitation(d, s, o)}/resend", None),
    "revoke_owner_invitation": lambda d, s, o, who: ("DELETE", f"/invitations/{_invitation(d, s, o, 'owner')}", None),
    "resend_owner_invitation": lambda d, s, o, who: ("POST", f"/invitations/{_invitation(d, s, o, 'owner')}/resend",
                                                     None),
    "list_outbox": lambda d, s, o, who: ("GET", "/outbox", None),
})
# What a viewer's key (no `admin` scope) or a rival's key is told: never a 2xx.
REFUSED = {403, 404}


def _call(client: FlaskClient, org: Org, headers: Headers, request: Request, slug: str | None = None) -> int:
    method, path, body = request
    response = client.open(f"/api/v1/orgs/{slug or org.slug}{path}", method=method, json=body, headers=headers)
    if response.status_code not in ALLOWED:
        assert response.content_type == "application/problem+json", response.data
    return response.status_code


def _fresh_target(db: Database, system: Actor, org: Org, role: str, n: int, deactivated: bool) -> Target:
    with db.transaction() as session:
        user_id, key_id, _ = _member_with_key(session, system, org.org_id, org.team_id, f"t{n}-{role}@acme.test",
                                              role, ["inference"])
        if deactivated:
            users.deactivate_user(session, system, org.org_id, user_id)
        link_identity(session, org.org_id, user_id)  # for the unlink cells
    return Target(user_id, key_id)


@pytest.mark.parametrize("action", sorted(MEMBER_REQUESTS))
def test_member_actions_over_http(client: FlaskClient, db: Database, system: Actor, org: Org, action: str) -> None:
    got, want = {}, {}
    n = 0
    for actor_role in (*ROLES, "rival"):
        for target_role in ROLES:
            n += 1
            target = _fresh_target(db, system, org, target_role, n, deactivated=action == "reactivate")
            header = org.rival if actor_role == "rival" else org.keys[actor_role]
            before = counts(db)
            status = _call(client, org, header, MEMBER_REQUESTS[action](org, target))
            allowed = target_role in ON_MEMBER[action].get(actor_role, ())
            want[actor_role, target_role] = "allowed" if allowed else "refused"
            got[actor_role, target_role] = ("allowed" if status in ALLOWED else
                                            "refused" if status in REFUSED and counts(db) == before else status)
    assert got == want


@pytest.mark.parametrize("action", sorted(ORG_REQUESTS))
def test_org_actions_over_http(client: FlaskClient, db: Database, system: Actor, org: Org, action: str) -> None:
    got = {}
    for role in (*ROLES, "rival"):
        request = ORG_REQUESTS[action](db, system, org, role)
        before = counts(db)
        status = _call(client, org, org.rival if role == "rival" else org.keys[role], request)
        got[role] = "allowed" if status in ALLOWED else "refused" if status in REFUSED and counts(db) == before \
            else status
    assert got == {role: "allowed" if role in ON_ORG[action] else "refused" for role in (*ROLES, "rival")}


def test_a_rival_key_never_reaches_a_member_through_its_own_org(client: FlaskClient, db: Database, system: Actor,
                                                               org: Org) -> None:
    """Another org's owner naming acme's member under their own org's path finds nothing."""
    target = _fresh_target(db, system, org, "member", 0, deactivated=False)
    before = counts(db)
    for request in (MEMBER_REQUESTS["deactivate"](org, target), MEMBER_REQUESTS["delete"](org, target),
                    MEMBER_REQUESTS["revoke_their_key"](org, target)):
        assert _call(client, org, org.rival, request, slug=org.rival_slug) == 404
    assert counts(db) == before


def test_each_role_reads_only_its_settings_and_mappings_over_http(client: FlaskClient, db: Database, system: Actor,
                                                                  org: Org) -> None:
    """GET .../settings and .../group-mappings answer what the domain's reads do (test_permission_matrix):
    a member sees neither billing nor IdP trust, nor the rule that makes owners, though GET .../seats
    and .../sso were already 403 to them. The answer to a PATCH is the same view."""
    with db.transaction() as session:
        orgs.update_settings(session, system, org.org_id, {"idp_may_grant_owner": True})
        to_owner = mappings.create_mapping(session, system, org.org_id, group_external_id="0c1e-owners",
                                           org_role="owner").id
    got = {}
    for role in ("owner", "admin", "member"):  # a viewer's key holds no `admin` scope
        settings = client.get(f"/api/v1/orgs/{org.slug}/settings", headers=org.keys[role])
        rules = client.get(f"/api/v1/orgs/{org.slug}/group-mappings", headers=org.keys[role])
        changed = client.patch(f"/api/v1/orgs/{org.slug}/settings", json={}, headers=org.keys[role])
        got[role] = (set(settings.json), set(changed.json), to_owner in {m["id"] for m in rules.json["group_mappings"]})
    assert got == {role: (READS_SETTINGS[role], READS_SETTINGS[role], role != "member")
                   for role in ("owner", "admin", "member")}
    assert _call(client, org, org.keys["member"], ("GET", "/seats", None)) == 403
    assert _call(client, org, org.keys["member"], ("GET", "/sso", None)) == 403
