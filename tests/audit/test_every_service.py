"""Every domain service that changes state writes its audit event, and an injected failure of the
event's write leaves neither the change nor the event (DESIGN.md section 6).

SERVICES lists each service with how to call it and the action it must write; a guard finds
every function in the domain packages that takes `(session, actor, ...)`, so that a new service
without a row here fails this file until it is added.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

import identity
from audit import Actor, clock, events
from audit.models import AuditEvent
from identity import (
    audit_access,
    charges,
    directory,
    gateway,
    group_claims,
    group_membership,
    group_sync,
    groups,
    invitations,
    key_list,
    key_settling,
    keys,
    lookups,
    mappings,
    members,
    org_lifecycle,
    orgs,
    outbox,
    owners,
    provisioning_log,
    scim_credentials,
    seats,
    sessions,
    signout,
    spend,
    team_deletion,
    teams,
    topups,
    usage,
    usage_audit,
    user_profile,
    users,
    wallet_controls,
    wallet_list,
    wallets,
)
from identity.db import Database
from identity.models import METADATAS, ApiKey, IdpGroup, Org, RoleGrant, User
from identity.orgs import NewOrg
from identity.sessions import Lifetime
from identity.vocabulary import Role
from saml import configuration as saml_configuration
from saml import service as saml_service
from saml.connection import IdpSettings
from saml.models import SamlConnection
from saml.protocol import Assertion
from tests.factories import provision

Call = Callable[[Session, Actor], Any]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
IDP = IdpSettings("https://idp.example.com/entity", "https://idp.example.com/sso", None, [])


@dataclass
class World:
    db: Database
    acme: NewOrg
    system: Actor

    @property
    def org_id(self) -> str:
        return self.acme.org.id

    def member(self, name: str = "bob@acme.test", **kwargs: Any) -> User:
        return provision(self.db, self.system, self.org_id, name, **kwargs)

    def team(self, name: str = "Platform") -> str:
        with self.db.transaction() as session:
            return teams.create_team(session, self.system, self.org_id, name).id

    def do(self, call: Call) -> Any:
        with self.db.transaction() as session:
            return call(session, self.system)


def _user(w: World, call: Callable[[Session, Actor, str, str], Any], **kwargs: Any) -> Call:
    user_id = w.member(**kwargs).id
    return lambda s, a: call(s, a, w.org_id, user_id)


def _team_member(w: World) -> Call:
    team_id, user_id = w.team(), w.member().id
    return lambda s, a: teams.add_team_member(s, a, w.org_id, team_id, user_id, "admin")


def _team_member_by_address(w: World) -> Call:
    team_id, user = w.team(), w.member()
    return lambda s, a: teams.add_team_member_by_address(s, a, w.org_id, team_id, user.user_name, "admin")


def _team_member_removed(w: World) -> Call:
    team_id, user_id = w.team(), w.member().id
    w.do(lambda s, a: teams.add_team_member(s, a, w.org_id, team_id, user_id))
    return lambda s, a: teams.remove_team_member(s, a, w.org_id, team_id, user_id)


def _deactivated(w: World) -> Call:
    user_id = w.member().id
    w.do(lambda s, a: users.deactivate_user(s, a, w.org_id, user_id))
    return lambda s, a: users.reactivate_user(s, a, w.org_id, user_id)


def _api_key(w: World) -> str:
    return w.do(lambda s, a: keys.create_api_key(s, a, w.org_id, user_id=w.acme.owner.id,
                                                 team_id=w.acme.default_team_id, name="k", scopes=["inference"])).id


def _scim_token(w: World) -> str:
    return w.do(lambda s, a: scim_credentials.create_scim_token(s, a, w.org_id, name="Okta")).id


def _seatless(w: World) -> User:
    user = w.member()
    w.do(lambda s, a: users.deactivate_user(s, a, w.org_id, user.id))
    with w.db.reading() as session:
        return session.get_one(User, user.id)


def _renewal(w: World) -> Call:
    def call(s: Session, a: Actor) -> Any:
        with clock.frozen_at(w.acme.org.cycle_end + dt.timedelta(days=1)):
            return seats.renew_org(s, a, w.org_id)
    return call


def _renew_if_due(w: World) -> Call:
    def call(s: Session, a: Actor) -> Any:
        with clock.frozen_at(w.acme.org.cycle_end + dt.timedelta(days=1)):
            return seats.renew_if_due(s, a, s.get_one(Org, w.org_id))
    return call


def _invitation(w: World) -> str:
    return str(w.do(lambda s, a: invitations.invite(s, a, w.org_id, email="carol@acme.test"))[1])


def _invitation_id(w: World) -> str:
    return str(w.do(lambda s, a: invitations.invite(s, a, w.org_id, email="dora@acme.test"))[0].id)


def _mail_id(w: World) -> str:
    invitation_id = _invitation_id(w)
    with w.db.reading() as session:
        return str(outbox.undelivered_for(session, invitation_id))


def _sso(w: World) -> None:
    w.do(lambda s, a: saml_configuration.configure_connection(s, a, w.org_id, IDP, allow_idp_initiated=True))


def _sign_in(w: World) -> Call:
    _sso(w)
    expires = clock.now() + dt.timedelta(minutes=5)
    assertion = Assertion("_a1", IDP.entity_id, "dave@acme.test", None, None, None, expires,
                          {"email": ["dave@acme.test"]})
    return lambda s, a: saml_service.sign_in(s, a, w.org_id, assertion, lifetime=Lifetime(),
                                             connection=s.get_one(SamlConnection, w.org_id))


def _metadata_refresh(w: World) -> Call:
    """A connection from a metadata URL, last fetched an hour ago; the IdP now publishes another key."""
    w.do(lambda s, a: saml_configuration.configure_connection(s, a, w.org_id, IDP, metadata_url="https://idp.test/md"))
    w.do(lambda s, a: setattr(s.get_one(SamlConnection, w.org_id), "metadata_refreshed_at",
                              dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)))
    rolled = replace(IDP, signing_certs=[*IDP.signing_certs, _other_cert()])
    return lambda s, a: saml_configuration.refresh_connection(s, a, w.org_id, rolled, url="https://idp.test/md",
                                                        reason="invalid_signature")


def _other_cert() -> str:
    from tests.saml.idp import KeyPair

    return KeyPair.make("rolled over").cert_b64


def _set_require_sso(w: World) -> Call:
    _sso(w)
    return lambda s, a: orgs.set_require_sso(s, a, w.org_id, True)


def _group(w: World, *members: str) -> str:
    return str(w.do(lambda s, a: groups.create_group(s, a, w.org_id, display_name="Engineering",
                                                     external_id="00g1", member_ids=list(members))).id)


def _owner_rules_after_trust_withdrawn(w: World) -> Call:
    """An IdP group that made a member owner, then `idp_may_grant_owner` turned off (as the setting's
    change leaves the org, before its rules are re-applied)."""
    member = w.member().id
    w.do(lambda s, a: orgs.update_settings(s, a, w.org_id, {"idp_may_grant_owner": True}))
    w.do(lambda s, a: mappings.create_mapping(s, a, w.org_id, group_display_name="Owners", org_role="owner"))
    w.do(lambda s, a: groups.create_group(s, a, w.org_id, display_name="Owners", member_ids=[member]))
    w.do(lambda s, a: setattr(s.get_one(Org, w.org_id), "idp_may_grant_owner", False))
    return lambda s, a: mappings.reapply_owner_rules(s, a, w.org_id)


def _group_call(w: World, call: Callable[..., Any], with_member: bool = False) -> Call:
    user_id = w.member().id
    group_id = _group(w, user_id) if with_member else _group(w)
    return lambda s, a: call(s, a, w.org_id, group_id, [user_id])


def _group_change(w: World) -> Call:
    """A rename with a member added: both land, or neither."""
    user_id, group_id = w.member().id, _group(w)
    change = groups.GroupChange(display_name="Platform Engineering", added=(user_id,))
    return lambda s, a: groups.change_group(s, a, w.org_id, group_id, change)


def _grants_of(w: World) -> Call:
    group_id = _group(w)
    with w.db.transaction() as session:  # as an org that mapped groups would leave it: no team yet
        session.get_one(IdpGroup, group_id).team_id = None
    return lambda s, a: group_membership.grants_of(s, a, s.get_one(IdpGroup, group_id))


def _mirror_team(w: World) -> Call:
    group_id = _group(w)
    with w.db.transaction() as session:  # as an org that mapped groups would leave it: no team yet
        session.get_one(IdpGroup, group_id).team_id = None
    return lambda s, a: group_membership.mirror_team(s, a, s.get_one(IdpGroup, group_id))


def _group_sync_switched(w: World) -> Call:
    """A mirrored group with a member, then `group_sync` set to mapped (as the setting's change leaves
    the org, before its groups are re-derived)."""
    _group(w, w.member().id)
    w.do(lambda s, a: setattr(s.get_one(Org, w.org_id), "group_sync", "mapped"))
    return lambda s, a: group_sync.rederive_unruled_groups(s, a, w.org_id)


def _scim_client(w: World) -> str:
    return w.do(lambda s, a: scim_credentials.create_scim_client(s, a, w.org_id)).id


# service -> (prepare: World -> the call, the action it must write)
SERVICES: dict[str, tuple[Callable[[World], Call], str]] = {
    "identity.orgs.create_org": (lambda w: lambda s, a: orgs.create_org(s, a, "Globex", owner_email="o@globex.test"),
                                 "org.created"),
    "identity.orgs.update_settings": (lambda w: lambda s, a: orgs.update_settings(
        s, a, w.org_id, {"default_role": "viewer"}), "org.settings_changed"),
    "identity.teams.create_team": (lambda w: lambda s, a: teams.create_team(s, a, w.org_id, "Data"), "team.created"),
    "identity.teams.rename_team": (lambda w: (lambda t: lambda s, a: teams.rename_team(s, a, w.org_id, t, "ML"))(
        w.team()), "team.renamed"),
    "identity.team_deletion.delete_team": (lambda w: (lambda t: lambda s, a: team_deletion.delete_team(
        s, a, w.org_id, t))(w.team()), "team.deleted"),
    "identity.teams.add_team_member": (_team_member, "team.member_added"),
    "identity.teams.add_team_member_by_address": (_team_member_by_address, "team.member_added"),
    "identity.teams.remove_team_member": (_team_member_removed, "team.member_removed"),
    "identity.users.provision_user": (lambda w: lambda s, a: users.provision_user(
        s, a, w.org_id, user_name="erin@acme.test", source="scim"), "user.created"),
    "identity.users.deactivate_user": (lambda w: _user(w, users.deactivate_user), "user.deactivated"),
    "identity.users.reactivate_user": (_deactivated, "user.reactivated"),
    "identity.member_removal.delete_user": (lambda w: _user(w, users.delete_user), "user.deleted"),
    "identity.users.change_role": (lambda w: (lambda u: lambda s, a: users.change_role(s, a, w.org_id, u, "admin"))(
        w.member().id), "member.role_changed"),
    "identity.user_profile.update_profile": (lambda w: (lambda u: lambda s, a: user_profile.update_profile(
        s, a, w.org_id, u, {"display_name": "Bob B."}))(w.member().id), "user.updated"),
    "identity.seats.take_seat": (lambda w: (lambda u: lambda s, a: seats.take_seat(s, a, s.get_one(User, u.id)))(
        _seatless(w)), "seat.assigned"),
    "identity.seats.free_seat": (lambda w: (lambda u: lambda s, a: seats.free_seat(s, a, s.get_one(User, u.id)))(
        w.member()), "seat.released"),
    # The seat alone, as a member's deletion frees it before writing the user's row itself.
    "identity.seats.release_seat": (lambda w: (lambda u: lambda s, a: seats.release_seat(
        s, a, s.get_one(User, u.id)))(w.member()), "seat.released"),
    "identity.seats.renew_org": (_renewal, "seat.renewed"),
    "identity.seats.renew_if_due": (_renew_if_due, "seat.renewed"),
    "identity.keys.create_api_key": (lambda w: lambda s, a: keys.create_api_key(
        s, a, w.org_id, user_id=w.acme.owner.id, team_id=w.acme.default_team_id, name="ci", scopes=["inference"]),
        "api_key.created"),
    "identity.keys.revoke_api_key": (lambda w: (lambda k: lambda s, a: keys.revoke_api_key(s, a, w.org_id, k))(
        _api_key(w)), "api_key.revoked"),
    "identity.keys.create_service_key": (lambda w: lambda s, a: keys.create_service_key(
        s, a, w.org_id, team_id=w.acme.default_team_id, name="ci", scopes=["inference"]), "api_key.created"),
    "identity.keys.rotate_api_key": (lambda w: (lambda k: lambda s, a: keys.rotate_api_key(s, a, w.org_id, k))(
        _api_key(w)), "api_key.rotated"),
    "identity.scim_credentials.create_scim_token": (lambda w: lambda s, a: scim_credentials.create_scim_token(s, a, w.org_id),
                                        "scim_token.created"),
    "identity.scim_credentials.revoke_scim_token": (lambda w: (lambda t: lambda s, a: scim_credentials.revoke_scim_token(s, a, w.org_id, t))(
        _scim_token(w)), "scim_token.revoked"),
    "identity.invitations.invite": (lambda w: lambda s, a: invitations.invite(s, a, w.org_id, email="x@acme.test"),
                                    "invitation.created"),
    "identity.invitations.accept": (lambda w: (lambda t: lambda s, a: invitations.accept(s, a, t))(_invitation(w)),
                                    "invitation.accepted"),
    "identity.invitations.decline": (lambda w: (lambda t: lambda s, a: invitations.decline(s, a, t))(_invitation(w)),
                                     "invitation.declined"),
    "identity.user_profile.sync_user": (lambda w: (lambda u: lambda s, a: user_profile.sync_user(
        s, a, w.org_id, u, {"display_name": "Bob B."}))(w.member().id), "user.updated"),
    "identity.member_removal.remove_user": (lambda w: _user(w, users.remove_user), "user.deleted"),
    "identity.owners.protect_last_owner": (lambda w: lambda s, a: owners.protect_last_owner(
        s, a, s.get_one(User, w.acme.owner.id), "deactivate"), "member.last_owner_protected"),
    "identity.owners.protect_group_owner": (lambda w: (lambda g: lambda s, a: owners.protect_group_owner(
        s, a, w.org_id, w.acme.owner.id, g))(_group(w)), "member.last_owner_protected"),
    "identity.scim_credentials.create_scim_client": (lambda w: lambda s, a: scim_credentials.create_scim_client(s, a, w.org_id),
                                         "scim_client.created"),
    "identity.scim_credentials.revoke_scim_client": (lambda w: (lambda c: lambda s, a: scim_credentials.revoke_scim_client(
        s, a, w.org_id, c))(_scim_client(w)), "scim_client.revoked"),
    "identity.groups.create_group": (lambda w: lambda s, a: groups.create_group(
        s, a, w.org_id, display_name="Sales", external_id="00g2"), "group.created"),
    "identity.groups.update_group": (lambda w: (lambda g: lambda s, a: groups.update_group(
        s, a, w.org_id, g, display_name="Platform Engineering"))(_group(w)), "group.updated"),
    "identity.groups.delete_group": (lambda w: (lambda g: lambda s, a: groups.delete_group(s, a, w.org_id, g))(
        _group(w)), "group.deleted"),
    "identity.group_membership.add_members": (lambda w: _group_call(w, group_membership.add_members),
                                              "group.members_added"),
    "identity.group_membership.remove_members": (
        lambda w: _group_call(w, group_membership.remove_members, with_member=True), "group.members_removed"),
    "identity.group_membership.replace_members": (lambda w: _group_call(w, group_membership.replace_members),
                                                  "group.members_added"),
    "identity.groups.change_group": (_group_change, "group.members_added"),
    "identity.groups.reapply": (lambda w: (lambda g: lambda s, a: groups.reapply(s, a, groups.get_group(
        s, w.org_id, g)))(_group(w, w.member().id)), "group.members_added"),
    "identity.mappings.reapply_owner_rules": (_owner_rules_after_trust_withdrawn, "group.members_added"),
    "identity.group_claims.apply_user_groups": (lambda w: (lambda u: lambda s, a: group_claims.apply_user_groups(
        s, a, w.org_id, u, ["Engineering", "Sales"]))(w.member().id), "group.members_added"),
    "identity.group_membership.grants_of": (_grants_of, "team.created"),
    "identity.group_membership.mirror_team": (_mirror_team, "team.created"),
    "identity.group_sync.rederive_unruled_groups": (_group_sync_switched, "group.grants_rederived"),
    "identity.mappings.create_mapping": (lambda w: lambda s, a: mappings.create_mapping(
        s, a, w.org_id, group_external_id="00g1", team_id=w.acme.default_team_id, team_role="member",
        org_role="admin"),
        "group_mapping.created"),
    "identity.mappings.delete_mapping": (lambda w: (lambda m: lambda s, a: mappings.delete_mapping(s, a, w.org_id, m))(
        w.do(lambda s, a: mappings.create_mapping(s, a, w.org_id, group_display_name="Eng", org_role="admin")).id),
        "group_mapping.deleted"),
    "saml.configuration.configure_connection": (lambda w: lambda s, a: saml_configuration.configure_connection(
        s, a, w.org_id, IDP), "sso.configured"),
    "identity.orgs.set_require_sso": (_set_require_sso, "sso.require_sso_changed"),
    "saml.configuration.refresh_connection": (_metadata_refresh, "sso.updated"),
    "saml.service.sign_in": (_sign_in, "sso.login_succeeded"),
    "saml.service.record_failure": (lambda w: lambda s, a: saml_service.record_failure(
        s, a, s.get_one(Org, w.org_id), "bad_signature"), "sso.login_failed"),
    "identity.members.add_member": (lambda w: lambda s, a: members.add_member(
        s, a, w.org_id, email="erin@acme.test", role=None, team_id=None), "user.created"),
    "identity.members.change_member": (lambda w: (lambda u: lambda s, a: members.change_member(
        s, a, w.org_id, u, role="admin", active=False))(w.member().id), "member.role_changed"),
    "identity.members.invite_member": (lambda w: lambda s, a: members.invite_member(
        s, a, w.org_id, email="x@acme.test", role="member", team_id=None), "invitation.created"),
    "identity.members.accept_invitation": (lambda w: (lambda t: lambda s, a: members.accept_invitation(s, a, t))(
        _invitation(w)), "invitation.accepted"),
    "identity.audit_access.read_events": (lambda w: lambda s, a: audit_access.read_events(
        s, a, events.Selection(w.org_id), 10), "audit.read"),
    "identity.audit_access.record_export": (lambda w: lambda s, a: audit_access.record_export(
        s, a, events.Selection(w.org_id), "jsonl"), "audit.exported"),
    "identity.audit_access.record_verification": (lambda w: lambda s, a: audit_access.record_verification(
        s, a, w.org_id, {"intact": True}), "audit.verified"),
    "identity.audit_access.sign_checkpoint": (lambda w: (lambda k: lambda s, a: audit_access.sign_checkpoint(
        s, a, k, w.org_id))(Ed25519PrivateKey.generate()), "audit.checkpoint_created"),
}


SERVICES.update({
    "identity.invitations.resend": (lambda w: (lambda i: lambda s, a: invitations.resend(s, a, w.org_id, i))(
        _invitation_id(w)), "invitation.resent"),
    "identity.invitations.revoke": (lambda w: (lambda i: lambda s, a: invitations.revoke(s, a, w.org_id, i))(
        _invitation_id(w)), "invitation.revoked"),
    "identity.members.resend_invitation": (lambda w: (lambda i: lambda s, a: members.resend_invitation(
        s, a, w.org_id, i))(_invitation_id(w)), "invitation.resent"),
    "identity.outbox.record_sent": (lambda w: (lambda m: lambda s, a: outbox.record_sent(s, a, m))(_mail_id(w)),
                                    "mail.sent"),
    "identity.outbox.record_failure": (lambda w: (lambda m: lambda s, a: outbox.record_failure(
        s, a, m, "ConnectionRefusedError"))(_mail_id(w)), "mail.failed"),
    "identity.outbox.record_expired": (lambda w: (lambda m: lambda s, a: outbox.record_expired(s, a, m))(
        _mail_id(w)), "mail.expired"),
})


def _signed_in(w: World) -> str:
    """A live SAML session of the owner (NameID `owner-1`); return its token."""
    with w.db.transaction() as session:
        return sessions.create_session(session, session.get_one(User, w.acme.owner.id), method="saml",
                                       lifetime=Lifetime(), name_id="owner-1")


def _in_team(w: World) -> tuple[str, str]:
    team_id, user_id = w.team(), w.member().id
    w.do(lambda s, a: teams.add_team_member(s, a, w.org_id, team_id, user_id))
    return team_id, user_id


def _deletable(w: World) -> Call:
    """An org with a member holding a key, a SCIM token and client, a pending invitation and SSO."""
    user_id = w.member().id
    w.do(lambda s, a: keys.create_api_key(s, a, w.org_id, user_id=user_id, team_id=w.acme.default_team_id,
                                          name="k", scopes=["inference"]))
    _scim_token(w), _scim_client(w), _invitation(w), _sso(w)
    return lambda s, a: org_lifecycle.delete_org(s, a, w.org_id, confirm="acme")


def _keys_left_behind(w: World) -> Call:
    """A member's key for a team a release before 2026-12-06 took away (the grant gone, the key active)."""
    team_id, user_id = _in_team(w)
    w.do(lambda s, a: keys.create_api_key(s, a, w.org_id, user_id=user_id, team_id=team_id, name="k",
                                          scopes=["inference"]))
    with w.db.begin() as conn:
        conn.execute(delete(RoleGrant).where(RoleGrant.user_id == user_id, RoleGrant.team_id == team_id))
    return lambda s, a: key_settling.settle_keys(s, a, w.org_id)


# Issue 16: team membership, the org's life, mappings edited in place.
SERVICES.update({
    "identity.teams.change_team_role": (lambda w: (lambda t: lambda s, a: teams.change_team_role(
        s, a, w.org_id, *t, "admin"))(_in_team(w)), "team.member_role_changed"),
    "identity.member_removal.deprovision": (lambda w: (lambda u: lambda s, a: users.deprovision(s, a, s.get_one(User, u)))(
        w.member().id), "user.deleted"),
    "identity.mappings.update_mapping": (lambda w: (lambda m: lambda s, a: mappings.update_mapping(
        s, a, w.org_id, m, {"org_role": "viewer"}))(w.do(lambda s, a: mappings.create_mapping(
            s, a, w.org_id, group_display_name="Eng", org_role="admin")).id), "group_mapping.updated"),
    "identity.org_lifecycle.transfer_ownership": (lambda w: (lambda u: lambda s, a: org_lifecycle.transfer_ownership(
        s, a, w.org_id, u, from_user_id=w.acme.owner.id))(w.member().id), "org.ownership_transferred"),
    "identity.org_lifecycle.delete_org": (_deletable, "org.deleted"),
    "identity.key_settling.settle_keys": (_keys_left_behind, "api_key.revoked_left_team"),
})

SERVICES.update({  # the operator's acts, in the operators' chain (audit.log.OPERATOR_STREAM)
    "identity.gateway.create_credential": (lambda w: lambda s, a: gateway.create_credential(s, a, name="gw"),
                                           "gateway_credential.created"),
    "identity.gateway.revoke_credential": (lambda w: (lambda c: lambda s, a: gateway.revoke_credential(s, a, c))(
        w.do(lambda s, a: gateway.create_credential(s, a)).id), "gateway_credential.revoked"),
    "identity.gateway.begin_chain": (lambda w: gateway.begin_chain, "operator.chain_begun"),
})

SERVICES.update({
    "identity.signout.sign_out": (lambda w: (lambda t: lambda s, a: signout.sign_out(s, a, t))(_signed_in(w)),
                                  "sso.logged_out"),
    "identity.signout.end_idp_sessions": (lambda w: (lambda t: lambda s, a: signout.end_idp_sessions(
        s, a, w.org_id, "owner-1", [], t))(_signed_in(w)), "sso.logged_out"),
})


# Issue 18: team wallets. The usage, the auto top-up and the key limit need a funded wallet and a key first.
def _funded(w: World, **controls: Any) -> str:
    team = w.acme.default_team_id
    w.do(lambda s, a: wallets.top_up(s, a, w.org_id, team, 1_000, "setup"))
    if controls:
        w.do(lambda s, a: wallet_controls.configure_wallet(s, a, w.org_id, team, **controls))
    return str(w.do(lambda s, a: keys.create_api_key(s, a, w.org_id, user_id=w.acme.owner.id, team_id=team,
                                                     name="k", scopes=["inference"])).id)


def _below_threshold(w: World) -> Call:
    """Auto top-up set above the balance (1,000 -> 500 by an adjustment, which raises no request; set
    on a balance already below it, configure_wallet would raise it itself)."""
    _funded(w, auto_topup={"threshold_micros": 800, "amount_micros": 10_000})
    w.do(lambda s, a: wallets.add_credit(s, a, w.org_id, w.acme.default_team_id, "adjustment", -500, "setup"))
    return lambda s, a: topups.request_if_due(s, a, wallets.lock_wallet(s, w.org_id, w.acme.default_team_id).wallet)


def _topup_pending(w: World) -> Call:
    key_id = _funded(w, auto_topup={"threshold_micros": 5_000, "amount_micros": 10_000})
    w.do(lambda s, a: usage.record_usage(s, a, [usage.UsageRecord(key_id, "m", 100, "req-1")]))
    return lambda s, a: topups.close_team_wallet(s, a, w.org_id, w.acme.default_team_id)


def _topup_withdrawn(w: World) -> Call:
    _topup_pending(w)
    return lambda s, a: wallets.withdraw_undelivered(
        s, a, wallets.lock_wallet(s, w.org_id, w.acme.default_team_id).wallet, "auto_topup_off")


def _topup_cancelled(w: World) -> Call:
    _topup_pending(w)
    return lambda s, a: topups.cancel_request(s, a, w.org_id, w.acme.default_team_id, wallets.lock_wallet(
        s, w.org_id, w.acme.default_team_id).wallet.pending_topup_id or "")


def _seat_usage(w: World) -> Call:
    w.do(lambda s, a: wallet_controls.set_settings(s, a, w.org_id, seat_usage_micros=500))
    return lambda s, a: wallets.grant_seat_usage(s, a, w.org_id)


SERVICES.update({
    "identity.wallets.top_up": (lambda w: lambda s, a: wallets.top_up(s, a, w.org_id, w.acme.default_team_id, 10, "i"),
                                "wallet.topped_up"),
    "identity.wallets.add_credit": (lambda w: lambda s, a: wallets.add_credit(
        s, a, w.org_id, w.acme.default_team_id, "refund", 10, "r"), "wallet.credited"),
    "identity.wallets.grant_seat_usage": (_seat_usage, "wallet.credited"),
    "identity.wallet_controls.configure_wallet": (lambda w: lambda s, a: wallet_controls.configure_wallet(
        s, a, w.org_id, w.acme.default_team_id, spend_limit=100, discount_percent=10), "wallet.settings_changed"),
    "identity.wallet_controls.set_subject_limit": (lambda w: (lambda k: lambda s, a: wallet_controls.set_subject_limit(
        s, a, w.org_id, w.acme.default_team_id, "key", k, 100))(_funded(w)), "wallet.limit_set"),
    "identity.wallet_controls.set_settings": (lambda w: lambda s, a: wallet_controls.set_settings(
        s, a, w.org_id, admins_may_top_up=True), "org.settings_changed"),
    "identity.usage.record_usage": (lambda w: (lambda k: lambda s, a: usage.record_usage(
        s, a, [usage.UsageRecord(k, "m", 100, "req-1")]))(_funded(w)), "wallet.usage_recorded"),
    "identity.topups.request_if_due": (_below_threshold, "wallet.topup_requested"),
    "identity.topups.close_team_wallet": (_topup_pending, "wallet.topup_cancelled"),
    "identity.wallets.withdraw_undelivered": (_topup_withdrawn, "wallet.topup_cancelled"),
    "identity.topups.cancel_request": (_topup_cancelled, "wallet.topup_cancelled"),
    "identity.usage_audit.summarise": (lambda w: lambda s, a: usage_audit.summarise(
        s, a, {w.acme.default_team_id: wallets.lock_wallet(s, w.org_id, w.acme.default_team_id)},
        [{"org_id": w.org_id, "team_id": w.acme.default_team_id, "amount_micros": -100, "cost_micros": 100,
          "request_id": "req-1"}]), "wallet.usage_recorded"),
    "identity.usage_audit.remember_refusal": (lambda w: lambda s, a: usage_audit.remember_refusal(
        s, a, wallets.lock_wallet(s, w.org_id, w.acme.default_team_id), "balance_exhausted", None, None),
        "wallet.spend_refused"),
})


def discovered_services() -> set[str]:
    """Every public function of the domain packages whose first parameters are (session, actor)."""
    modules = [importlib.import_module(f"identity.{m.name}") for m in pkgutil.iter_modules(identity.__path__)]
    modules.append(saml_service)
    found = set()
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.isfunction):
            params = list(inspect.signature(function).parameters)
            if function.__module__ == module.__name__ and not name.startswith("_") and params[:2] == ["session", "actor"]:
                found.add(f"{module.__name__}.{name}")
    return found


# Services that take an actor only to authorize a read: they change nothing and write no event.
READS: dict[str, Callable[[World], Call]] = {
    "identity.scim_credentials.list_scim_clients": lambda w: lambda s, a: scim_credentials.list_scim_clients(s, a, w.org_id),
    "identity.scim_credentials.list_scim_tokens": lambda w: lambda s, a: scim_credentials.list_scim_tokens(s, a, w.org_id),
    "identity.key_list.list_api_keys": lambda w: lambda s, a: key_list.list_api_keys(s, a, w.org_id, limit=10),
    "identity.directory.list_members": lambda w: lambda s, a: directory.list_members(s, a, w.org_id, limit=10),
    "identity.directory.get_member": lambda w: lambda s, a: directory.get_member(s, a, w.org_id, w.acme.owner.id),
    "identity.directory.list_teams": lambda w: lambda s, a: directory.list_teams(s, a, w.org_id),
    "identity.directory.org_settings": lambda w: lambda s, a: directory.org_settings(s, a, w.org_id),
    "identity.directory.list_invitations": lambda w: lambda s, a: directory.list_invitations(s, a, w.org_id),
    "identity.directory.list_group_mappings": lambda w: lambda s, a: directory.list_group_mappings(s, a, w.org_id),
    "identity.directory.seat_preview": lambda w: lambda s, a: directory.seat_preview(s, a, w.org_id),
    "identity.invitations.check_invitation": lambda w: lambda s, a: invitations.check_invitation(
        s, a, w.org_id, email="x@acme.test"),
    "identity.audit_access.list_checkpoints": lambda w: lambda s, a: audit_access.list_checkpoints(
        s, a, w.org_id, after=0, limit=10),
    "saml.configuration.read_connection": lambda w: lambda s, a: saml_configuration.read_connection(s, a, w.org_id),
    "identity.outbox.list_outbox": lambda w: (lambda i: lambda s, a: outbox.list_outbox(s, a, w.org_id))(
        _invitation_id(w)),
}
# Issue 16's reads: a team and its members, the removal preview, the seat ledger.
READS.update({
    "identity.teams.removal_preview": lambda w: (lambda t: lambda s, a: teams.removal_preview(s, a, w.org_id, *t))(
        _in_team(w)),
    "identity.directory.team_page": lambda w: lambda s, a: directory.team_page(s, a, w.org_id, limit=10),
    "identity.directory.get_team_detail": lambda w: lambda s, a: directory.get_team_detail(
        s, a, w.org_id, w.acme.default_team_id, limit=10),
    "identity.directory.get_team_member": lambda w: lambda s, a: directory.get_team_member(
        s, a, w.org_id, w.acme.default_team_id, w.acme.owner.id),
    "identity.charges.seat_charges": lambda w: lambda s, a: charges.seat_charges(s, a, w.org_id, limit=10),
    "identity.lookups.acting_user_id": lambda w: lambda s, a: lookups.acting_user_id(s, a),
    "identity.keys.actor_user_id": lambda w: lambda s, a: keys.actor_user_id(s, a),
})
# Issue 17's reads: the IdP setup page's provisioning status, the audit page's newest checkpoint.
READS["identity.audit_access.newest_checkpoint"] = lambda w: lambda s, a: audit_access.newest_checkpoint(s, a, w.org_id)
# s22's reads: whether a full page of the audit log has another beyond it, and how many events are newer
# than the bounded view (counted, not read out; the page itself records `audit.read`).
READS["identity.audit_access.any_events"] = lambda w: lambda s, a: audit_access.any_events(
    s, a, events.Selection(w.org_id), below_seq=10)
READS["identity.audit_access.count_events"] = lambda w: lambda s, a: audit_access.count_events(
    s, a, events.Selection(w.org_id, after_seq=1), at_most=10)
READS["identity.provisioning_log.provisioning_status"] = lambda w: lambda s, a: provisioning_log.provisioning_status(
    s, a, w.org_id)
# Issue 18's reads: a wallet, its spend, ledger and limits, a member's spend, the top-up requests.
READS.update({
    "identity.spend.get_wallet": lambda w: lambda s, a: spend.get_wallet(s, a, w.org_id, w.acme.default_team_id),
    "identity.spend.spend": lambda w: lambda s, a: spend.spend(s, a, w.org_id, w.acme.default_team_id, by="member"),
    "identity.spend.ledger": lambda w: lambda s, a: spend.ledger(s, a, w.org_id, w.acme.default_team_id),
    "identity.spend.subject_limits": lambda w: lambda s, a: spend.subject_limits(s, a, w.org_id,
                                                                                 w.acme.default_team_id),
    "identity.spend.with_limits": lambda w: lambda s, a: spend.with_limits(s, a, w.org_id, w.acme.default_team_id,
                                                                           [], by="key"),
    "identity.spend.ledger_names": lambda w: lambda s, a: spend.ledger_names(s, a, w.org_id, []),
    "identity.spend.member_spend": lambda w: lambda s, a: spend.member_spend(s, a, w.org_id, w.acme.owner.id),
    "identity.spend.key_states": lambda w: lambda s, a: spend.key_states(s, a, w.org_id, list(s.scalars(
        select(ApiKey).where(ApiKey.org_id == w.org_id)))),
    "identity.topups.list_requests": lambda w: lambda s, a: topups.list_requests(s, a, w.org_id,
                                                                                w.acme.default_team_id),
})


# The console's questions (may this caller act on this key, top up), answered by the services' own rules.


def _owners_key(w: World) -> str:
    return str(w.do(lambda s, a: keys.create_api_key(s, a, w.org_id, user_id=w.acme.owner.id,
                                                     team_id=w.acme.default_team_id, name="k", scopes=["inference"]).id))


READS.update({
    "identity.keys.may_act_on_key": lambda w: (lambda k: lambda s, a: keys.may_act_on_key(
        s, a, w.org_id, s.get_one(ApiKey, k), rotate=True))(_owners_key(w)),
    "identity.wallets.may_top_up": lambda w: lambda s, a: wallets.may_top_up(s, a, w.org_id),
})
# The console at scale: a page's teams' wallets and names, a team typed by name.
READS.update({
    "identity.wallet_list.team_wallets": lambda w: lambda s, a: wallet_list.team_wallets(
        s, a, w.org_id, [w.acme.default_team_id]),
    "identity.directory.team_names": lambda w: lambda s, a: directory.team_names(s, a, w.org_id,
                                                                                [w.acme.default_team_id]),
    "identity.directory.find_team": lambda w: lambda s, a: directory.find_team(s, a, w.org_id, "Default"),
})
# The member an action on one is aimed at, once the actor may do it (identity.user_profile asks it too).
# Checks a write makes at its end (SCIM) or under the org's lock (a session): they read, and refuse or pass.
READS["identity.scim_credentials.confirm_credential"] = lambda w: (lambda t: lambda s, a: scim_credentials.confirm_credential(
    s, Actor("scim_token", t, "Okta", org_id=w.org_id)))(_scim_token(w))
READS["identity.sessions.confirm_role"] = lambda w: lambda s, a: sessions.confirm_role(
    s, Actor("user", w.acme.owner.id, "owner", org_id=w.org_id, role="owner"))
READS["identity.users.target_of"] = lambda w: (lambda u: lambda s, a: users.target_of(
    s, a, "member.update_profile", w.org_id, u))(w.member().id)
# The owners' team roles read before a re-derivation of group grants, and the check after it.
READS.update({
    "identity.owners.owners_team_roles": lambda w: lambda s, a: owners.owners_team_roles(s, a, w.org_id),
    "identity.owners.refuse_owner_team_loss": lambda w: lambda s, a: owners.refuse_owner_team_loss(
        s, a, w.org_id, {(w.acme.owner.id, w.acme.default_team_id): Role.MEMBER}),
})


def test_every_service_that_takes_an_actor_is_in_the_table() -> None:
    missing = discovered_services() - set(SERVICES) - set(READS)
    assert not missing, f"services without an audit test row in SERVICES: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(READS))
def test_a_read_service_changes_nothing(name: str, db: Database, acme: NewOrg, system: Actor) -> None:
    call = READS[name](World(db, acme, system))
    before = snapshot(db)
    with db.transaction() as session:
        call(session, system)
    assert snapshot(db) == before


def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, to compare before and after a change that must not happen."""
    with db.reading() as session:
        return {table.name: sorted(map(tuple, session.execute(select(table))), key=repr)
                for metadata in METADATAS for table in metadata.sorted_tables}


def inject_event_failure(db: Database, on: bool) -> None:
    """Make every INSERT into audit_events fail, as a full disk or a lost connection would."""
    with db.begin() as conn:
        if db.dialect == "postgresql":
            if on:
                conn.exec_driver_sql("CREATE FUNCTION injected() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                     "BEGIN RAISE EXCEPTION 'injected failure'; END $$")
                conn.exec_driver_sql("CREATE TRIGGER injected BEFORE INSERT ON audit_events "
                                     "FOR EACH ROW EXECUTE FUNCTION injected()")
            else:
                conn.exec_driver_sql("DROP TRIGGER injected ON audit_events")
                conn.exec_driver_sql("DROP FUNCTION injected()")
        elif on:
            conn.exec_driver_sql("CREATE TRIGGER injected BEFORE INSERT ON audit_events "
                                 "BEGIN SELECT RAISE(ABORT, 'injected failure'); END")
        else:
            conn.exec_driver_sql("DROP TRIGGER injected")


def new_actions(db: Database, seen: set[str]) -> list[str]:
    with db.reading() as session:
        rows = session.execute(select(AuditEvent.id, AuditEvent.action).order_by(AuditEvent.org_id, AuditEvent.seq))
        return [action for event_id, action in rows if event_id not in seen]


def event_ids(db: Database) -> set[str]:
    with db.reading() as session:
        return set(session.scalars(select(AuditEvent.id)))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_writes_its_event_and_a_failed_event_write_undoes_the_change(
        name: str, db: Database, acme: NewOrg, system: Actor) -> None:
    prepare, action = SERVICES[name]
    call = prepare(World(db, acme, system))
    before = snapshot(db)
    inject_event_failure(db, True)
    try:
        with pytest.raises(Exception, match="injected failure"), db.transaction() as session:
            call(session, system)
    finally:
        inject_event_failure(db, False)
    assert snapshot(db) == before, "the change landed without its event"

    seen = event_ids(db)
    with db.transaction() as session:
        call(session, system)
    written = new_actions(db, seen)
    assert action in written
    assert snapshot(db) != before
    assert set(written) <= documented_actions(), "an action missing from docs/audit.md section 2"


def documented_actions() -> set[str]:
    """The actions listed in docs/audit.md section 2."""
    text = DOCS.read_text()
    section = text[text.index("## 2. Actions"):text.index("## 3.")]
    return set(re.findall(r"`([a-z_]+\.[a-z_]+)`", section))


def test_a_failing_change_after_its_event_was_recorded_writes_no_event(db: Database, acme: NewOrg,
                                                                         system: Actor) -> None:
    """The other direction: the event is queued, then the change fails in the database at commit."""
    user_id = provision(db, system, acme.org.id, "bob@acme.test").id
    before = snapshot(db)
    # The org row (its seat counter) cannot be written.
    inject = ("CREATE TRIGGER no_org_update BEFORE UPDATE ON orgs BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
              if db.dialect == "sqlite" else None)
    with db.begin() as conn:
        if inject:
            conn.exec_driver_sql(inject)
        else:
            conn.exec_driver_sql("CREATE FUNCTION no_org_update() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                 "BEGIN RAISE EXCEPTION 'injected failure'; END $$")
            conn.exec_driver_sql("CREATE TRIGGER no_org_update BEFORE UPDATE ON orgs "
                                 "FOR EACH ROW EXECUTE FUNCTION no_org_update()")
    with pytest.raises(Exception, match="injected failure"), db.transaction() as session:
        users.deactivate_user(session, system, acme.org.id, user_id)
    assert snapshot(db) == before
