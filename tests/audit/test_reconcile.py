"""Reconciling the log with the data (DESIGN.md section 6): an org changed only through the services
reconciles clean; each change made with SQL on the domain tables, around the services and so around
the log, is found; purged history is not held against old entities; `identity audit verify` reports it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from audit import Actor, clock
from audit.log import Target, record
from audit.models import AuditEvent
from identity import (
    gateway,
    group_membership,
    groups,
    invitations,
    keys,
    mappings,
    orgs,
    scim_credentials,
    seats,
    team_deletion,
    teams,
    tokens,
    user_profile,
    users,
)
from identity.db import Database
from identity.models import (
    ApiKey,
    GatewayCredential,
    GroupMapping,
    IdpGroupMember,
    Invitation,
    Org,
    RoleGrant,
    ScimClient,
    ScimToken,
    User,
)
from identity.orgs import NewOrg
from identity.reconcile import Finding, reconcile
from identity.sessions import Lifetime
from saml import configuration as saml_configuration
from saml import service as saml_service
from saml.connection import IdpSettings
from saml.models import SamlConnection
from saml.protocol import Assertion
from tests.audit.conftest import as_attacker
from tests.factories import provision

IDP = IdpSettings("https://idp.example.com/entity", "https://idp.example.com/sso", None, [])


def findings(db: Database, org_id: str) -> list[Finding]:
    with db.reading() as session:
        return reconcile(session, org_id)


def sql(db: Database, *statements: Any) -> None:
    """Change domain tables the way someone with database access would: no service, no event."""
    with db.begin() as conn:
        for statement in statements:
            conn.execute(statement)


@dataclass
class World:
    """Acme after a realistic life; `ids` names its people, teams, groups, keys and tokens."""

    db: Database
    org_id: str
    ids: dict[str, str]


def lived_in(db: Database, acme: NewOrg, system: Actor) -> World:
    """Acme after an IdP pushed people and groups, admins changed roles, teams and keys, and a renewal.

    Long because it is one org's story, told in order.
    """
    org_id, ids = acme.org.id, {"owner": acme.owner.id, "default": acme.default_team_id}

    def do(actor: Actor, call: Callable[[Session, Actor], Any]) -> Any:
        with db.transaction() as session:
            return call(session, actor)

    ids["token"] = do(system, lambda s, a: scim_credentials.create_scim_token(s, a, org_id, name="Okta")).id
    scim = Actor("scim_token", ids["token"], "SCIM token Okta", org_id=org_id)
    for name in ("alice", "bob", "carol", "dave", "erin"):  # five people: two seats bought beyond the three included
        ids[name] = provision(db, scim, org_id, f"{name}@acme.test", external_id=f"00u{name}", source="scim").id
    ids["platform"] = do(system, lambda s, a: teams.create_team(s, a, org_id, "Platform")).id
    do(system, lambda s, a: mappings.create_mapping(s, a, org_id, group_external_id="00gEng", team_id=ids["platform"],
                                                  team_role="admin", org_role="admin"))
    ids["eng"] = do(scim, lambda s, a: groups.create_group(s, a, org_id, display_name="Engineering",
                                                           external_id="00gEng",
                                                           member_ids=[ids["alice"], ids["bob"]])).id
    ids["sales"] = do(scim, lambda s, a: groups.create_group(s, a, org_id, display_name="Sales", external_id="00gS",
                                                             member_ids=[ids["carol"]])).id  # mirrored as a team
    do(scim, lambda s, a: group_membership.replace_members(s, a, org_id, ids["sales"], [ids["carol"], ids["dave"]]))
    do(scim, lambda s, a: group_membership.remove_members(s, a, org_id, ids["eng"], [ids["bob"]]))
    do(scim, lambda s, a: groups.update_group(s, a, org_id, ids["eng"], display_name="Engineering EU"))
    do(system, lambda s, a: saml_configuration.configure_connection(s, a, org_id, IDP, allow_idp_initiated=True))
    assertion = Assertion("_a1", IDP.entity_id, "hank@acme.test", None, None, None,
                          clock.now() + dt.timedelta(minutes=5),
                          {"email": ["hank@acme.test"], "groups": ["00gEng", "Design"]})
    ids["hank"] = do(Actor("system", "saml-sso", "SAML SSO", org_id=org_id), lambda s, a: saml_service.sign_in(
        s, a, org_id, assertion, connection=s.get(SamlConnection, org_id), lifetime=Lifetime())).user.id  # JIT, a new mirrored group, a mapped one
    do(system, lambda s, a: users.change_role(s, a, org_id, ids["dave"], "admin"))
    do(system, lambda s, a: users.change_role(s, a, org_id, ids["alice"], "owner"))
    do(system, lambda s, a: users.change_role(s, a, org_id, ids["alice"], "admin"))  # back to what the group gives (less is refused)
    do(system, lambda s, a: teams.add_team_member(s, a, org_id, ids["platform"], ids["erin"], "viewer"))
    do(system, lambda s, a: teams.add_team_member(s, a, org_id, ids["platform"], ids["erin"], "admin"))

    def key(user: str, team: str) -> str:
        return str(do(system, lambda s, a: keys.create_api_key(s, a, org_id, user_id=ids[user], team_id=ids[team],
                                                               name=f"{user} key", scopes=["inference"])).id)

    ids["key_alice"], ids["key_bob"] = key("alice", "platform"), key("bob", "default")
    # Dave's team is Sales' mirror, not Default: a member a group gives a team is not in Default (DESIGN 3.3).
    ids["sales_team"] = do(system, lambda s, a: groups.get_group(s, org_id, ids["sales"]).team_id)
    ids["key_dave"], ids["key_erin"] = key("dave", "sales_team"), key("erin", "platform")
    do(system, lambda s, a: keys.revoke_api_key(s, a, org_id, ids["key_bob"]))
    do(scim, lambda s, a: user_profile.sync_user(s, a, org_id, ids["dave"], {"active": False}))  # blocks dave's key
    do(scim, lambda s, a: user_profile.sync_user(s, a, org_id, ids["dave"], {"active": True}))  # and unblocks it
    ids["key_dave_next"] = do(system, lambda s, a: keys.rotate_api_key(s, a, org_id, ids["key_dave"])).id
    do(scim, lambda s, a: user_profile.sync_user(s, a, org_id, ids["carol"], {"email": "carol@acme.example"}))
    do(scim, lambda s, a: user_profile.sync_user(s, a, org_id, ids["bob"], {"active": False}))
    do(scim, lambda s, a: users.remove_user(s, a, org_id, ids["erin"]))  # revokes erin's key
    do(system, lambda s, a: teams.remove_team_member(s, a, org_id, ids["platform"], ids["alice"]))  # and alice's
    temp = do(system, lambda s, a: teams.create_team(s, a, org_id, "Temp")).id
    do(system, lambda s, a: teams.add_team_member(s, a, org_id, temp, ids["carol"]))
    do(system, lambda s, a: team_deletion.delete_team(s, a, org_id, temp))  # (a team holding keys cannot be deleted yet)
    do(system, lambda s, a: teams.rename_team(s, a, org_id, ids["platform"], "Platform Core"))
    _, link = do(system, lambda s, a: invitations.invite(s, a, org_id, email="frank@acme.test", role="viewer"))
    with db.transaction() as session:
        ids["frank"] = invitations.accept(session, invitations.invitee(session, link), link).id
    _, declined = do(system, lambda s, a: invitations.invite(s, a, org_id, email="gina@acme.test"))
    with db.transaction() as session:
        invitations.decline(session, invitations.invitee(session, declined), declined)
    ids["client"] = do(system, lambda s, a: scim_credentials.create_scim_client(s, a, org_id, name="Entra")).id
    do(system, lambda s, a: scim_credentials.revoke_scim_client(s, a, org_id, ids["client"]))
    ids["old_token"] = do(system, lambda s, a: scim_credentials.create_scim_token(s, a, org_id, name="old")).id
    do(system, lambda s, a: scim_credentials.revoke_scim_token(s, a, org_id, ids["old_token"]))
    mapping = do(system, lambda s, a: mappings.create_mapping(s, a, org_id, group_display_name="Sales", org_role="viewer"))
    do(system, lambda s, a: orgs.update_settings(s, a, org_id, {"group_sync": "mapped", "max_seats": 50}))
    do(system, lambda s, a: mappings.delete_mapping(s, a, org_id, mapping.id))  # Sales now grants nothing
    do(scim, lambda s, a: groups.delete_group(s, a, org_id, ids["sales"]))
    with clock.frozen_at(acme.org.cycle_end + dt.timedelta(days=1)):
        do(system, lambda s, a: seats.renew_org(s, a, org_id))
    return World(db, org_id, ids)


@pytest.fixture
def world(db: Database, acme: NewOrg, system: Actor) -> World:
    return lived_in(db, acme, system)


def test_an_org_changed_only_through_the_services_reconciles_clean(world: World) -> None:
    with world.db.reading() as session:
        acted = set(session.scalars(select(AuditEvent.action).where(AuditEvent.org_id == world.org_id)))
    # The story touched every kind of state the reconciliation checks.
    assert {"seat.purchased", "seat.renewed", "member.role_changed", "team.member_role_changed", "user.reactivated",
            "user.deleted", "group.members_removed", "group_mapping.deleted", "api_key.revoked", "team.deleted",
            "invitation.accepted", "scim_client.revoked", "sso.login_succeeded"} <= acted
    assert findings(world.db, world.org_id) == []


def _new_user(w: World) -> Any:
    now = clock.now()
    return insert(User).values(id=str(uuid.uuid4()), org_id=w.org_id, user_name="mallory@acme.test",
                               user_name_key="mallory@acme.test", active=True, has_seat=False, source="manual", attributes={}, created_at=now, updated_at=now,
                               version=1)


def _grant(w: World, user: str, team: str | None, role: str) -> Any:
    return insert(RoleGrant).values(org_id=w.org_id, user_id=w.ids[user], team_id=team and w.ids[team], role=role,
                                    source="manual", source_ref="", created_at=clock.now())


def _org_id(w: World) -> str:
    return w.org_id


# name -> (the bypass, as SQL statements; what is found: kind, whose id, words of the finding)
BYPASSES: dict[str, tuple[Callable[[World], list[Any]], str, Callable[[World], str], str]] = {
    "user inserted": (lambda w: [_new_user(w)], "user", lambda w: "", "no user.created event"),
    "active user deactivated": (lambda w: [update(User).where(User.id == w.ids["carol"]).values(active=False)],
                                "user", lambda w: w.ids["carol"], "active is False, but the last event that set it, "
                                "user.created"),
    "deactivated user reactivated": (lambda w: [update(User).where(User.id == w.ids["bob"]).values(active=True)],
                                     "user", lambda w: w.ids["bob"], "active is True, but the last event that set it, "
                                     "user.deactivated"),
    "deleted user restored": (lambda w: [update(User).where(User.id == w.ids["erin"]).values(deleted_at=None)],
                              "user", lambda w: w.ids["erin"], "deleted is False"),
    "display name changed": (lambda w: [update(User).where(User.id == w.ids["carol"]).values(display_name="Mallory")],
                             "user", lambda w: w.ids["carol"], "display_name is 'Mallory', but the last event that "
                             "set it, user.created"),
    "org role granted": (lambda w: [_grant(w, "carol", None, "owner")], "role_grant", lambda w: "",
                         "org-wide from manual as owner was given by no event"),
    "team membership granted": (lambda w: [_grant(w, "frank", "platform", "admin")], "role_grant", lambda w: "",
                                "in team"),
    "role raised": (lambda w: [update(RoleGrant).where(RoleGrant.user_id == w.ids["dave"], RoleGrant.source == "manual",
                                                       RoleGrant.team_id.is_(None)).values(role="owner")],
                    "role_grant", lambda w: "", "is owner, but the events leave it admin"),
    "group's grant removed": (lambda w: [delete(RoleGrant).where(  # hank joined Engineering by a SAML claim
        RoleGrant.user_id == w.ids["hank"], RoleGrant.source_ref == w.ids["eng"], RoleGrant.team_id.is_(None))],
        "role_grant", lambda w: f"{w.ids['hank']}/org", "org-wide from saml (group"),
    "invitation's grant removed": (lambda w: [delete(RoleGrant).where(
        RoleGrant.user_id == w.ids["frank"], RoleGrant.team_id.is_(None))],
        "role_grant", lambda w: f"{w.ids['frank']}/org", "org-wide from invitation as viewer, but the data has no"),
    "seat flag dropped": (lambda w: [update(User).where(User.id == w.ids["dave"]).values(has_seat=False)],
                          "user", lambda w: w.ids["dave"], "has_seat is False, but the last event that set it, "
                          "seat.assigned"),
    "seats_used raised": (lambda w: [update(Org).where(Org.id == w.org_id).values(seats_used=Org.seats_used + 1)],
                          "org", _org_id, "seats_used is"),
    "purchased seats raised": (lambda w: [update(Org).where(Org.id == w.org_id).values(
        purchased_seats=Org.purchased_seats + 1)], "org", _org_id, "purchased_seats is"),
    "seat cap lifted": (lambda w: [update(Org).where(Org.id == w.org_id).values(max_seats=None)],
                        "org", _org_id, "max_seats is None, but the last event that set it, org.settings_changed"),
    "api key inserted": (lambda w: [insert(ApiKey).values(
        id=str(uuid.uuid4()), org_id=w.org_id, team_id=w.ids["default"], user_id=w.ids["owner"], name="backdoor",
        prefix="key_backdoor", secret_hash="0" * 64, scopes=["admin"], status="active", created_at=clock.now())],
        "api_key", lambda w: "", "no api_key.created event"),
    "api key un-revoked": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_bob"]).values(
        status="active", status_reason=None)], "api_key", lambda w: w.ids["key_bob"], "status is 'active', but the "
        "last event that set it, api_key.revoked"),
    "blocked key unblocked": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_erin"]).values(status="active")],
                              "api_key", lambda w: w.ids["key_erin"], "user.deleted"),
    "api key scopes widened": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave"]).values(
        scopes=["admin", "inference"])], "api_key", lambda w: w.ids["key_dave"], "scopes is"),
    "api key secret replaced": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave_next"]).values(
        secret_hash=tokens.digest("key_0123456789ab_known-to-the-insider"))], "api_key",
        lambda w: w.ids["key_dave_next"], "its stored secret hash is not the one api_key.created"),
    "rotated-out key revived": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave"]).values(
        expires_at=clock.now() + dt.timedelta(days=365))], "api_key", lambda w: w.ids["key_dave"],
        "but the last event that set it, api_key.rotated"),
    "rotated key's successor unlinked": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave"]).values(
        rotated_to=None)], "api_key", lambda w: w.ids["key_dave"], "rotated_to is None"),
    "live key given an end": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave_next"]).values(
        expires_at=clock.now())], "api_key", lambda w: w.ids["key_dave_next"], "left it None"),
    "api key renamed": (lambda w: [update(ApiKey).where(ApiKey.id == w.ids["key_dave"]).values(name="ci")],
                        "api_key", lambda w: w.ids["key_dave"], "name is 'ci'"),
    "scim token secret replaced": (lambda w: [update(ScimToken).where(ScimToken.id == w.ids["token"]).values(
        secret_hash=tokens.digest("scim_0123456789ab_known-to-the-insider"))], "scim_token",
        lambda w: w.ids["token"], "its stored secret hash is not the one scim_token.created"),
    "scim client secret replaced": (lambda w: [update(ScimClient).where(ScimClient.id == w.ids["client"]).values(
        secret_hash=tokens.digest("scimcs_0123456789ab_known-to-the-insider"))], "scim_client",
        lambda w: w.ids["client"], "its stored secret hash is not the one scim_client.created"),
    "invitation's end pushed": (lambda w: [update(Invitation).where(Invitation.email == "gina@acme.test").values(
        expires_at=clock.now() + dt.timedelta(days=365))], "invitation", lambda w: "",
        "but the last event that set it, invitation.created"),
    "invitation link planted": (lambda w: [update(Invitation).where(Invitation.email == "gina@acme.test").values(
        secret_hash=tokens.digest("inv_0123456789ab_known-to-the-insider"))], "invitation", lambda w: "",
        "its stored secret hash is not the one invitation.created"),
    "invitation's sender replaced": (lambda w: [update(Invitation).where(Invitation.email == "gina@acme.test").values(
        invited_by=w.ids["owner"])], "invitation", lambda w: "", "invited_by is"),
    "scim token un-revoked": (lambda w: [update(ScimToken).where(ScimToken.id == w.ids["old_token"]).values(
        revoked_at=None)], "scim_token", lambda w: w.ids["old_token"], "revoked is False"),
    "scim token revocation moved": (lambda w: [update(ScimToken).where(ScimToken.id == w.ids["old_token"]).values(
        revoked_at=clock.now() + dt.timedelta(days=30))], "scim_token", lambda w: w.ids["old_token"],
        "revoked_at is datetime"),
    "scim client revocation moved": (lambda w: [update(ScimClient).where(ScimClient.id == w.ids["client"]).values(
        revoked_at=clock.now() - dt.timedelta(days=30))], "scim_client", lambda w: w.ids["client"],
        "but the last event that set it, scim_client.revoked"),
    "mapping rule widened": (lambda w: [update(GroupMapping).where(GroupMapping.team_id == w.ids["platform"]).values(
        org_role="owner")], "group_mapping", lambda w: "", "org_role is 'owner', but the last event that set it, "
        "group_mapping.created"),
    "group member added": (lambda w: [insert(IdpGroupMember).values(group_id=w.ids["eng"], user_id=w.ids["carol"])],
                           "group_member", lambda w: f"{w.ids['eng']}/{w.ids['carol']}", "no group.members_added"),
}


@pytest.mark.parametrize("name", list(BYPASSES))
def test_a_change_that_bypassed_the_log_is_found(world: World, name: str) -> None:
    statements, kind, whose, words = BYPASSES[name]
    sql(world.db, *statements(world))
    found = findings(world.db, world.org_id)
    assert len({(f.kind, f.entity_id) for f in found}) == 1, [str(f) for f in found]  # one entity, field by field
    assert found[0].kind == kind and any(words in f.problem for f in found), [str(f) for f in found]
    assert whose(world) in ("", found[0].entity_id), str(found[0])


def test_a_seat_count_changed_between_two_events_is_found_even_when_later_events_agree(
        world: World, system: Actor) -> None:
    sql(world.db, update(Org).where(Org.id == world.org_id).values(seats_used=Org.seats_used + 1))
    provision(world.db, system, world.org_id, "ivan@acme.test")  # records the bumped count as its `before`
    found = findings(world.db, world.org_id)
    assert [f.kind for f in found] == ["org"] and "with no event" in found[0].problem, [str(f) for f in found]


NOW = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def test_entities_older_than_the_retained_log_are_not_reported(cli: Callable[..., Result], db: Database,
                                                               system: Actor) -> None:
    with clock.frozen_at(NOW - dt.timedelta(days=400)):
        with db.transaction() as session:
            old = orgs.create_org(session, system, "Oldco", owner_email="owner@oldco.test")
        org_id = old.org.id
        veteran = provision(db, system, org_id, "vera@oldco.test", source="scim")
        with db.transaction() as session:
            vera_key = keys.create_api_key(session, system, org_id, user_id=veteran.id, team_id=old.default_team_id,
                                           name="v", scopes=["inference"])
            scim_credentials.create_scim_token(session, system, org_id)
    with clock.frozen_at(NOW - dt.timedelta(days=10)):
        newcomer = provision(db, system, org_id, "nina@oldco.test")
        with db.transaction() as session:  # an old key named by id, then (blocked) by prefix: one key
            keys.rotate_api_key(session, system, org_id, vera_key.id)
        with db.transaction() as session:  # an old member's later change stays checked
            users.deactivate_user(session, system, org_id, veteran.id)
    with clock.frozen_at(NOW):
        assert "removed" in cli("purge", "--org", "oldco").output
    with db.reading() as session:
        kept = set(session.scalars(select(AuditEvent.target_id).where(AuditEvent.org_id == org_id)))
    assert veteran.id in kept and old.owner.id not in kept  # the owner's history is gone, vera's deactivation not
    assert findings(db, org_id) == []

    intruder = str(uuid.uuid4())
    sql(db, update(User).where(User.id == veteran.id).values(active=True),
        update(User).where(User.id == newcomer.id).values(active=False),
        _new_user(World(db, org_id, {})).values(id=intruder))
    sql(db, update(ApiKey).where(ApiKey.id == vera_key.id).values(expires_at=None))  # its rotation, undone
    found = {(f.entity_id, f.problem.split(",")[0]) for f in findings(db, org_id)}
    assert found == {(veteran.id, "active is True"), (newcomer.id, "active is False"), (intruder, "exists"),
                     (vera_key.id, "expires_at is None")}


@pytest.mark.postgres_only("REPEATABLE READ is PostgreSQL's; a SQLite reader sees one snapshot anyway")
def test_the_events_and_the_data_are_read_in_one_snapshot(db: Database) -> None:
    from sqlalchemy import text

    with db.reading() as session:  # what `identity audit verify` reconciles in (identity.db's rule)
        assert session.scalar(text("SHOW transaction_isolation")) == "repeatable read"


def test_verify_prints_the_findings_and_exits_non_zero(cli: Callable[..., Result], world: World) -> None:
    clean = cli("verify", "--org", "acme")
    assert clean.exit_code == 0 and "reconciled: the events explain" in clean.output, clean.output
    sql(world.db, *[_new_user(world).values(id=str(uuid.uuid4()), user_name=f"m{n}@acme.test", user_name_key=f"m{n}@acme.test") for n in range(25)])
    result = cli("verify", "--org", "acme")
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("org acme: intact:")  # the chain's line, as before
    assert lines[1] == "org acme: NOT RECONCILED: 25 change(s) in the data that no event explains"
    assert all(line.startswith("  user ") and "no user.created event" in line for line in lines[2:22]), lines
    assert lines[22:] == ["  ... and 5 more"]
    with world.db.reading() as session:
        verified = session.scalars(select(AuditEvent).where(AuditEvent.org_id == world.org_id)
                                   .order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert verified.action == "audit.verified"
    assert verified.changes["reconciled"] is False and verified.changes["findings"] == 25
    skipped = cli("verify", "--org", "acme", "--no-reconcile")
    assert skipped.exit_code == 0 and "NOT RECONCILED" not in skipped.output


def test_a_broken_chain_keeps_its_exit_status_and_is_not_reconciled(cli: Callable[..., Result], db: Database,
                                                                    acme: NewOrg) -> None:
    sql(db, update(User).where(User.id == acme.owner.id).values(active=False))
    as_attacker(db, ("UPDATE audit_events SET actor_display = 'someone' WHERE org_id = :org AND seq = 2",
                     {"org": acme.org.id}))
    result = cli("verify", "--org", "acme")
    assert result.exit_code == 1 and "BROKEN at event #2" in result.output
    assert "RECONCILED" not in result.output and "reconciled" not in result.output


def test_a_credential_made_before_fingerprints_were_recorded_is_not_held_against_the_log(
        db: Database, acme: NewOrg, system: Actor) -> None:
    """An api_key.created or scim_token.created written before the events carried `hash_fingerprint`
    says nothing of the hash: it is not a finding, and (docs/audit.md) its secret is not covered."""
    new = tokens.generate("key")
    key_id, token_id = str(uuid.uuid4()), str(uuid.uuid4())
    with db.transaction() as session:  # as create_api_key and create_scim_token wrote them then
        session.add(ApiKey(id=key_id, org_id=acme.org.id, team_id=acme.default_team_id, user_id=acme.owner.id,
                           name="old", prefix=new.prefix, secret_hash=new.hash, scopes=["inference"],
                           status="active", created_at=clock.now()))
        record(session, system, "api_key.created", Target("api_key", key_id, new.prefix),
               {"name": "old", "team_id": acme.default_team_id, "user_id": acme.owner.id, "scopes": ["inference"],
                "role_cap": None}, org_id=acme.org.id)
        session.add(ScimToken(id=token_id, org_id=acme.org.id, name="old", prefix="scim_0123456789ab",
                              secret_hash=new.hash, created_at=clock.now()))
        record(session, system, "scim_token.created", Target("scim_token", token_id, "scim_0123456789ab"),
               {"name": "old"}, org_id=acme.org.id)
    assert findings(db, acme.org.id) == []
    sql(db, update(ApiKey).where(ApiKey.id == key_id).values(secret_hash="0" * 64),
        update(ScimToken).where(ScimToken.id == token_id).values(secret_hash="0" * 64))
    assert findings(db, acme.org.id) == []  # not covered: made before this change


def test_an_export_of_events_with_fingerprints_verifies(cli: Callable[..., Result], world: World,
                                                        tmp_path: Any) -> None:
    path = tmp_path / "acme.jsonl"
    assert cli("export", "--org", "acme", "-o", str(path)).exit_code == 0
    assert '"hash_fingerprint"' in path.read_text()
    result = cli("verify", "--org", "acme", str(path))
    assert result.exit_code == 0 and "intact" in result.output, result.output


def test_the_operators_chain_explains_every_gateway_credential(cli: Callable[..., Result], db: Database,
                                                              system: Actor) -> None:
    with db.transaction() as session:  # one made before the operators' chain began (2026-12-06): no event
        session.add(GatewayCredential(id=str(uuid.uuid4()), name="older", prefix="gw_0123456789ab",
                                      secret_hash="0" * 64, created_at=clock.now() - dt.timedelta(days=30)))
    with db.transaction() as session:
        live = gateway.create_credential(session, system, name="edge")
        gone = gateway.create_credential(session, system, name="old edge")
    with db.transaction() as session:
        gateway.revoke_credential(session, system, gone.id)
    clean = cli("verify", "--org", "@operator")
    assert clean.exit_code == 0 and "reconciled: the events explain every gateway credential" in clean.output, \
        clean.output
    intruder = str(uuid.uuid4())
    sql(db, update(GatewayCredential).where(GatewayCredential.id == live.id).values(
            secret_hash=tokens.digest("gw_0123456789ab_known-to-the-insider")),
        update(GatewayCredential).where(GatewayCredential.id == gone.id).values(revoked_at=None),
        insert(GatewayCredential).values(id=intruder, name="backdoor", prefix="gw_ba5eba11ba5e", secret_hash="0" * 64,
                                         created_at=clock.now()))
    result = cli("verify", "--org", "@operator")
    assert result.exit_code == 3, result.output
    found = [line.strip() for line in result.output.splitlines()[2:]]
    assert len(found) == 4, found  # the revoked one field by field: revoked, revoked_at
    assert any(line.startswith(f"gateway_credential {live.id} ") and "stored secret hash is not the one" in line
               for line in found), found
    assert any(line.startswith(f"gateway_credential {gone.id} ") and "revoked is False" in line for line in found)
    sql(db, update(GatewayCredential).where(GatewayCredential.id == gone.id).values(
        revoked_at=clock.now() + dt.timedelta(days=30)))  # revoked again, but not when its event says
    moved = cli("verify", "--org", "@operator")
    assert any(line.strip().startswith(f"gateway_credential {gone.id} ") and "revoked_at is" in line
               and "gateway_credential.revoked" in line for line in moved.output.splitlines()), moved.output
    assert any(line.startswith(f"gateway_credential {intruder} ") and "no gateway_credential.created" in line
               for line in found), found
