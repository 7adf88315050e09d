"""Replaying an org's events into what the data should now hold (the first half of reconciliation).

Each action that changes state has one handler (here, or for teams, IdP groups, their rules and an
org's deletion in identity.replay_groups), written from what its service records (identity.users,
member_removal, user_profile, owners, seats, teams, team_deletion, groups, group_membership, keys,
key_settling, invitations, orgs; gateway, in the operators' chain). Events are read in chain order,
a window at a time, and only per-entity state is kept: for every entity the fields the events set,
which event set each (for the finding's message), and whether its creation is in the retained log
(identity.replay_state). Refused and failed events changed nothing and are skipped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from audit.events import Selection, iter_rows
from identity import replay_groups
from identity.actions import Action
from identity.replay_state import (
    AT_MOST,
    UNKNOWN,
    Entity,
    Expected,
    Finding,
    GrantKey,
    Handler,
    changed_to,
    drop_grants,
    entity_of,
    key_of,
    rank,
    set_key_status,
)
from identity.tokens import FINGERPRINT
from identity.vocabulary import ChargeKind, GrantSource, InvitationStatus, KeyStatus, KeyStatusReason, Role

# Re-exported: identity.reconcile and the tests read the state's names from here.
__all__ = ["AT_MOST", "HANDLERS", "UNKNOWN", "Entity", "Expected", "Finding", "GrantKey", "Handler", "rank", "replay"]


def replay(session: Session, org_id: str, after_seq: int, org_defaults: dict[str, Any]) -> Expected:
    """Return the state the org's events after `after_seq` lead to, streaming them in chain order.

    `org_defaults` are the settings an org starts with that org.created does not record.
    """
    expected = Expected(org_id, org_defaults)
    for event in iter_rows(session, Selection(org_id, after_seq=after_seq)):
        handler = HANDLERS.get(event.action)
        if handler is not None and event.outcome == "success":
            handler(expected, event)
    return expected


# Org: its seat counters, its settings and the ledger.

def _org_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    x.org.created = e.seq
    x.org.set(e, **x.org_defaults)
    x.org.set(e, seats_used=0, purchased_seats=0, included_seats=c["included_seats"],
              seat_price_cents=c["seat_price_cents"], max_seats=c["max_seats"])


def _settings_changed(x: Expected, e: Row[Any]) -> None:
    x.org.set(e, **{name: changed_to(change) for name, change in e.changes.items() if isinstance(change, dict)})


def _counter(x: Expected, e: Row[Any], name: str) -> None:
    """Follow a counter the events carry as before/after; a jump between two events bypassed the log."""
    change = e.changes.get(name)
    if not isinstance(change, dict):
        return
    if name in x.org.fields and x.org.fields[name] != change["before"]:
        x.findings.append(Finding("org", x.org_id, f"{name} went from {x.org.fields[name]} to {change['before']} "
                                  f"between {x.org.why[name]} and {e.action} (#{e.seq}) with no event"))
    x.org.set(e, **{name: change["after"]})


def _charged(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    kind = ChargeKind.SEAT_PURCHASE if e.action == Action.SEAT_PURCHASED else ChargeKind.SEAT_RENEWAL
    charge = x.charges.setdefault(c["charge_id"], Entity(created=e.seq))
    charge.set(e, kind=kind, seats=c["seats"], amount_cents=c["amount_cents"])
    _counter(x, e, "purchased_seats")


def _seat(x: Expected, e: Row[Any]) -> None:
    entity_of(x.users, e).set(e, has_seat=e.action == Action.SEAT_ASSIGNED)
    _counter(x, e, "seats_used")


# Members: lifecycle, profile, grants.

NAMES = ("display_name", "given_name", "family_name")


def _user_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    names = {name: c[name] for name in NAMES if name in c}  # recorded since 2026-11-22
    entity_of(x.users, e, created=True).set(e, active=c["active"], deleted=False, has_seat=False,
                                          user_name=c["user_name"], email=c["email"], external_id=c["external_id"],
                                          **names)
    x.grants[e.target_id] = {(None, c["source"], ""): c["role"], (c["team_id"], c["source"], ""): Role.MEMBER}
    x.user_sources[e.target_id] = c["source"]


def _user_updated(x: Expected, e: Row[Any]) -> None:
    entity_of(x.users, e).set(e, **{name: change["after"] for name, change in e.changes.items()
                                  if name in ("user_name", "email", "external_id", *NAMES)
                                  and isinstance(change, dict)})


def _deactivated(x: Expected, e: Row[Any]) -> None:
    entity_of(x.users, e).set(e, active=False)
    set_key_status(x, e, e.changes.get("keys_blocked", []), KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION)


def _reactivated(x: Expected, e: Row[Any]) -> None:
    entity_of(x.users, e).set(e, active=True)
    set_key_status(x, e, e.changes.get("keys_unblocked", []), KeyStatus.ACTIVE, None)


def _user_deleted(x: Expected, e: Row[Any]) -> None:
    entity_of(x.users, e).set(e, active=False, deleted=True)
    if e.target_id in x.grants:
        x.grants[e.target_id] = {}
    x.user_sources.pop(e.target_id, None)
    for members in x.group_members.values():
        members.discard(e.target_id)
    set_key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.MEMBER_DELETED)


def _role_changed(x: Expected, e: Row[Any]) -> None:
    """change_role replaces the member's org grants by one manual grant: every grant no group gave
    (events that say so), or, in older events, the manual and invitation grants."""
    if e.changes.get("replaced") == "every_grant_but_groups":
        drop_grants(x, e.target_id, lambda key: key[0] is not None or key[2] != "")
    else:
        ungrouped = (GrantSource.MANUAL, GrantSource.INVITATION)
        drop_grants(x, e.target_id, lambda key: key[0] is not None or key[1] not in ungrouped)
    grants = x.grants.get(e.target_id)
    if grants is None:
        return
    if "manual_role" in e.changes:  # the grant written, recorded as such
        grants[(None, GrantSource.MANUAL, "")] = changed_to(e.changes["manual_role"])
        return
    # Older events name only the resulting role: the manual grant is at most that.
    after = changed_to(e.changes["role"])
    others = [role for key, role in grants.items() if key[0] is None]
    exact = all(rank(after) > rank(role) for role in others)
    grants[(None, GrantSource.MANUAL, "")] = after if exact else AT_MOST + after


def _team_grant(x: Expected, e: Row[Any]) -> None:
    grants = x.grants.get(e.target_id)
    if grants is not None:
        grants[(e.changes["team_id"], GrantSource.MANUAL, "")] = changed_to(e.changes["team_role"])


def _team_left(x: Expected, e: Row[Any]) -> None:
    team_id = e.changes["team_id"]
    drop_grants(x, e.target_id, lambda key: key[0] != team_id)
    set_key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)


# Credentials and invitations.

def _fingerprint(c: dict[str, Any]) -> dict[str, Any]:
    """The fingerprint (identity.tokens.fingerprint) of the hash an event gave a credential: every
    event that makes or changes a credential's hash goes through here. One that does not record it
    (an older release's, before 2026-12-07) says nothing of the new hash: UNKNOWN, left unchecked
    until an event records one, and not the fingerprint an earlier event recorded of the old hash,
    which a rolling upgrade's older worker (an `invitation.resent` after a newer one's
    `invitation.created`) would otherwise turn into a finding on a clean database."""
    return {FINGERPRINT: c.get(FINGERPRINT, UNKNOWN)}


def _key_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    x.key_ids[e.target_display] = e.target_id
    # An event before migration 0024 does not say the cap that migration gave the key: left unchecked.
    cap = {"role_cap": c["role_cap"]} if "role_cap" in c else {}
    entity_of(x.api_keys, e, created=True).set(e, status=KeyStatus.ACTIVE, status_reason=None, user_id=c["user_id"],
                                             team_id=c["team_id"], scopes=sorted(c["scopes"]), name=c["name"],
                                             expires_at=None, rotated_to=None, **cap, **_fingerprint(c))


def _key_rotated(x: Expected, e: Row[Any]) -> None:
    """The old key keeps working until `expires_at`, then answers `expired`: its end is what makes
    it stop, so a later one set by SQL revives it."""
    c = e.changes
    key_of(x, e).set(e, expires_at=dt.datetime.fromisoformat(c["expires_at"]), rotated_to=c["rotated_to"])


def _key_revoked(x: Expected, e: Row[Any]) -> None:
    key_of(x, e).set(e, status=KeyStatus.REVOKED, status_reason=e.changes.get("reason", KeyStatusReason.MANUAL))


def _left_keys_revoked(x: Expected, e: Row[Any]) -> None:
    """identity.key_settling: an org's keys whose holders had left their teams, named by prefix."""
    set_key_status(x, e, e.changes["keys_revoked"], KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)


def _revocation(c: dict[str, Any], revoked: bool) -> dict[str, Any]:
    """Whether a SCIM token, SCIM client or gateway credential is revoked, and since when: the
    `revoked_at` its revocation (or baseline) records since 2026-12-07, so a time moved by SQL is
    found; an older event's is UNKNOWN, unchecked."""
    if not revoked:
        return {"revoked": False, "revoked_at": None}
    when = c.get("revoked_at")
    return {"revoked": True, "revoked_at": dt.datetime.fromisoformat(when) if when else UNKNOWN}


def _token_created(x: Expected, e: Row[Any]) -> None:
    entity_of(x.scim_tokens, e, created=True).set(e, name=e.changes["name"], prefix=e.target_display,
                                                **_revocation(e.changes, False), **_fingerprint(e.changes))


def _token_revoked(x: Expected, e: Row[Any]) -> None:
    entity_of(x.scim_tokens, e).set(e, **_revocation(e.changes, True))


def _client_created(x: Expected, e: Row[Any]) -> None:
    entity_of(x.scim_clients, e, created=True).set(e, name=e.changes["name"], client_id=e.target_display,
                                                 **_revocation(e.changes, False), **_fingerprint(e.changes))


def _client_revoked(x: Expected, e: Row[Any]) -> None:
    entity_of(x.scim_clients, e).set(e, **_revocation(e.changes, True))


def _gateway_credential_created(x: Expected, e: Row[Any]) -> None:
    """The operators' chain (audit.log.OPERATOR_STREAM): a gateway credential, by identity.gateway."""
    entity_of(x.gateway_credentials, e, created=True).set(e, name=e.changes["name"], prefix=e.target_display,
                                                        **_revocation(e.changes, False), **_fingerprint(e.changes))


def _gateway_credential_baseline(x: Expected, e: Row[Any]) -> None:
    """A credential the operators' chain found when it began (identity.gateway.begin_chain), as it was then."""
    entity_of(x.gateway_credentials, e, created=True).set(e, name=e.changes["name"], prefix=e.target_display,
                                                        **_revocation(e.changes, e.changes["revoked"]),
                                                        **_fingerprint(e.changes))


def _gateway_credential_revoked(x: Expected, e: Row[Any]) -> None:
    entity_of(x.gateway_credentials, e).set(e, **_revocation(e.changes, True))


def _invited(x: Expected, e: Row[Any]) -> None:
    """Its sender (`invited_by`) is the event's actor, whose authority an acceptance asks about again."""
    c = e.changes
    entity_of(x.invitations, e, created=True).set(e, status=InvitationStatus.PENDING, email=c["email"], role=c["role"],
                                                team_id=c["team_id"], invited_by=e.actor_id, **_link(c))


def _invitation_status(x: Expected, e: Row[Any]) -> None:
    entity_of(x.invitations, e).set(e, status=changed_to(e.changes["status"]))


def _invitation_resent(x: Expected, e: Row[Any]) -> None:
    """A new link: its end and its hash's fingerprint, as at creation. The resender becomes its sender
    since 2026-12-06, and the event records `invited_by` when that changed it; without it the sender
    stayed (the resender's own invitation, or an older release's resend, which kept the sender)."""
    sender = {"invited_by": changed_to(e.changes["invited_by"])} if "invited_by" in e.changes else {}
    entity_of(x.invitations, e).set(e, status=changed_to(e.changes["status"]), **sender, **_link(e.changes))


def _link(c: dict[str, Any]) -> dict[str, Any]:
    """An invitation link's end and fingerprint, when its event records them: a later end set by SQL
    revives a lapsed invitation, a planted hash is a link its planter knows."""
    end = {"expires_at": dt.datetime.fromisoformat(c["expires_at"])} if "expires_at" in c else {}
    return {**end, **_fingerprint(c)}


# action -> its handler: what each recorded change did to the data.
HANDLERS: dict[str, Handler] = {
    Action.ORG_CREATED: _org_created,
    Action.ORG_SETTINGS_CHANGED: _settings_changed,
    Action.SSO_REQUIRE_SSO_CHANGED: _settings_changed,
    Action.SEAT_ASSIGNED: _seat,
    Action.SEAT_RELEASED: _seat,
    Action.SEAT_PURCHASED: _charged,
    Action.SEAT_RENEWED: _charged,
    Action.USER_CREATED: _user_created,
    Action.USER_UPDATED: _user_updated,
    Action.USER_DEACTIVATED: _deactivated,
    Action.USER_REACTIVATED: _reactivated,
    Action.USER_DELETED: _user_deleted,
    Action.MEMBER_ROLE_CHANGED: _role_changed,
    Action.TEAM_MEMBER_ADDED: _team_grant,
    Action.TEAM_MEMBER_ROLE_CHANGED: _team_grant,
    Action.TEAM_MEMBER_REMOVED: _team_left,
    Action.TEAM_CREATED: replay_groups.team_created,
    Action.TEAM_RENAMED: replay_groups.team_renamed,
    Action.TEAM_DELETED: replay_groups.team_deleted,
    Action.GROUP_CREATED: replay_groups.group_created,
    Action.GROUP_UPDATED: replay_groups.group_updated,
    Action.GROUP_DELETED: replay_groups.group_deleted,
    Action.GROUP_MEMBERS_ADDED: replay_groups.members_added,
    Action.GROUP_MEMBERS_REMOVED: replay_groups.members_removed,
    Action.GROUP_GRANTS_REDERIVED: replay_groups.grants_rederived,
    Action.GROUP_MAPPING_CREATED: replay_groups.mapping_created,
    Action.GROUP_MAPPING_DELETED: replay_groups.mapping_deleted,
    Action.GROUP_MAPPING_UPDATED: replay_groups.mapping_updated,
    Action.ORG_DELETED: replay_groups.org_deleted,
    Action.API_KEY_CREATED: _key_created,
    Action.API_KEY_REVOKED: _key_revoked,
    Action.API_KEY_ROTATED: _key_rotated,
    Action.API_KEY_REVOKED_LEFT_TEAM: _left_keys_revoked,
    Action.SCIM_TOKEN_CREATED: _token_created,
    Action.SCIM_TOKEN_REVOKED: _token_revoked,
    Action.SCIM_CLIENT_CREATED: _client_created,
    Action.SCIM_CLIENT_REVOKED: _client_revoked,
    Action.GATEWAY_CREDENTIAL_CREATED: _gateway_credential_created,
    Action.GATEWAY_CREDENTIAL_REVOKED: _gateway_credential_revoked,
    Action.GATEWAY_CREDENTIAL_BASELINE: _gateway_credential_baseline,
    Action.INVITATION_CREATED: _invited,
    Action.INVITATION_ACCEPTED: _invitation_status,
    Action.INVITATION_DECLINED: _invitation_status,
    Action.INVITATION_EXPIRED: _invitation_status,
    Action.INVITATION_RESENT: _invitation_resent,
    Action.INVITATION_REVOKED: _invitation_status,
}
