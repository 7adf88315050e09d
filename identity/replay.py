"""Replaying an org's events into what the data should now hold (the first half of reconciliation).

Each action that changes state has one handler here, written from what its service records
(identity.users, owners, seats, teams, team_deletion, groups, keys, invitations, orgs). Events are read
in chain order, a window at a time, and only per-entity state is kept: for every entity the
fields the events set, which event set each (for the finding's message), and whether its
creation is in the retained log (identity.replay_state). Refused and failed events changed nothing
and are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from audit.events import Selection, iter_rows
from identity.actions import Action
from identity.replay_state import AT_MOST, Entity, Expected, Finding, GrantKey, Handler, rank
from identity.vocabulary import ChargeKind, GrantSource, InvitationStatus, KeyStatus, KeyStatusReason, Role

# Re-exported: identity.reconcile and the tests read the state's names from here.
__all__ = ["AT_MOST", "HANDLERS", "Entity", "Expected", "Finding", "GrantKey", "Handler", "rank", "replay"]


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


def _after(change: Any) -> Any:
    return change["after"] if isinstance(change, dict) else change


def _entity(entities: dict[str, Entity], event: Row[Any], created: bool = False) -> Entity:
    entity = entities.setdefault(event.target_id, Entity())
    if created:
        entity.created = event.seq
    return entity


# Org: its seat counters, its settings and the ledger.

def _org_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    x.org.created = e.seq
    x.org.set(e, **x.org_defaults)
    x.org.set(e, seats_used=0, purchased_seats=0, included_seats=c["included_seats"],
              seat_price_cents=c["seat_price_cents"], max_seats=c["max_seats"])


def _settings_changed(x: Expected, e: Row[Any]) -> None:
    x.org.set(e, **{name: _after(change) for name, change in e.changes.items() if isinstance(change, dict)})


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
    _entity(x.users, e).set(e, has_seat=e.action == Action.SEAT_ASSIGNED)
    _counter(x, e, "seats_used")


# Members: lifecycle, profile, grants.

NAMES = ("display_name", "given_name", "family_name")


def _user_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    names = {name: c[name] for name in NAMES if name in c}  # recorded since 2026-11-22
    _entity(x.users, e, created=True).set(e, active=c["active"], deleted=False, has_seat=False,
                                          user_name=c["user_name"], email=c["email"], external_id=c["external_id"],
                                          **names)
    x.grants[e.target_id] = {(None, c["source"], ""): c["role"], (c["team_id"], c["source"], ""): Role.MEMBER}
    x.user_sources[e.target_id] = c["source"]


def _user_updated(x: Expected, e: Row[Any]) -> None:
    _entity(x.users, e).set(e, **{name: change["after"] for name, change in e.changes.items()
                                  if name in ("user_name", "email", "external_id", *NAMES)
                                  and isinstance(change, dict)})


def _deactivated(x: Expected, e: Row[Any]) -> None:
    _entity(x.users, e).set(e, active=False)
    _key_status(x, e, e.changes.get("keys_blocked", []), KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION)


def _reactivated(x: Expected, e: Row[Any]) -> None:
    _entity(x.users, e).set(e, active=True)
    _key_status(x, e, e.changes.get("keys_unblocked", []), KeyStatus.ACTIVE, None)


def _user_deleted(x: Expected, e: Row[Any]) -> None:
    _entity(x.users, e).set(e, active=False, deleted=True)
    if e.target_id in x.grants:
        x.grants[e.target_id] = {}
    x.user_sources.pop(e.target_id, None)
    for members in x.group_members.values():
        members.discard(e.target_id)
    _key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.MEMBER_DELETED)


def _drop(x: Expected, user_id: str, keep: Callable[[GrantKey], bool]) -> None:
    grants = x.grants.get(user_id)
    if grants is not None:
        x.grants[user_id] = {key: role for key, role in grants.items() if keep(key)}


def _role_changed(x: Expected, e: Row[Any]) -> None:
    """change_role replaces the member's org grants by one manual grant: every grant no group gave
    (events that say so), or, in older events, the manual and invitation grants."""
    if e.changes.get("replaced") == "every_grant_but_groups":
        _drop(x, e.target_id, lambda key: key[0] is not None or key[2] != "")
    else:
        ungrouped = (GrantSource.MANUAL, GrantSource.INVITATION)
        _drop(x, e.target_id, lambda key: key[0] is not None or key[1] not in ungrouped)
    grants = x.grants.get(e.target_id)
    if grants is None:
        return
    if "manual_role" in e.changes:  # the grant written, recorded as such
        grants[(None, GrantSource.MANUAL, "")] = _after(e.changes["manual_role"])
        return
    # Older events name only the resulting role: the manual grant is at most that.
    after = _after(e.changes["role"])
    others = [role for key, role in grants.items() if key[0] is None]
    exact = all(rank(after) > rank(role) for role in others)
    grants[(None, GrantSource.MANUAL, "")] = after if exact else AT_MOST + after


def _team_grant(x: Expected, e: Row[Any]) -> None:
    grants = x.grants.get(e.target_id)
    if grants is not None:
        grants[(e.changes["team_id"], GrantSource.MANUAL, "")] = _after(e.changes["team_role"])


def _team_left(x: Expected, e: Row[Any]) -> None:
    team_id = e.changes["team_id"]
    _drop(x, e.target_id, lambda key: key[0] != team_id)
    _key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)


# Teams and IdP groups.

def _team_created(x: Expected, e: Row[Any]) -> None:
    _entity(x.teams, e, created=True).set(e, exists=True, name=e.changes["name"])


def _team_renamed(x: Expected, e: Row[Any]) -> None:
    _entity(x.teams, e).set(e, name=_after(e.changes["name"]))


def _team_deleted(x: Expected, e: Row[Any]) -> None:
    _entity(x.teams, e).set(e, exists=False)
    grouped = [user_id for user_id, grants in x.grants.items()
               if any(key[0] == e.target_id and key[2] != "" for key in grants)]
    for user_id in list(x.grants):
        _drop(x, user_id, lambda key: key[0] != e.target_id)
    _settle_defaults(x, grouped, e.changes.get("defaults"), left_group_team=set(grouped))
    _key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.TEAM_DELETED)
    _key_status(x, e, e.changes.get("keys_revoked_left_team", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)
    for entity in (*x.api_keys.values(), *x.invitations.values()):  # their rows stay, the team unset
        if entity.fields.get("team_id") == e.target_id:
            entity.set(e, team_id=None)


def _group_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    _entity(x.groups, e, created=True).set(e, exists=True, display_name=c["display_name"],
                                           external_id=c["external_id"])
    x.group_members[e.target_id] = set()


def _group_updated(x: Expected, e: Row[Any]) -> None:
    _entity(x.groups, e).set(e, **{name: change["after"] for name, change in e.changes.items()
                                   if name in ("display_name", "external_id") and isinstance(change, dict)})


def _group_deleted(x: Expected, e: Row[Any]) -> None:
    """The group and its memberships go; grants of members it kept (a protected last owner) stay."""
    _entity(x.groups, e).set(e, exists=False)
    x.group_members.pop(e.target_id, None)


def _members_added(x: Expected, e: Row[Any]) -> None:
    """A group's grants for these members are exactly what this event names (a re-applied rule included).

    Events name the grants' source since 2026-12; before, every group grant was labelled `scim`.
    """
    c, group_id = e.changes, e.target_id
    source = c.get("source", GrantSource.SCIM)
    left = _group_team_holders(x, c["members"], group_id)  # a re-applied rule takes the team it gave first
    for user_id in c["members"]:
        x.group_members.get(group_id, set()).add(user_id)
        _drop(x, user_id, lambda key: key[2] != group_id)
        grants = x.grants.get(user_id)
        if grants is None:
            continue
        if c.get("team_id"):
            grants[(c["team_id"], source, group_id)] = c["team_role"]
        if c.get("org_role"):
            grants[(None, source, group_id)] = c["org_role"]
    _settle_defaults(x, c["members"], c.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def _members_removed(x: Expected, e: Row[Any]) -> None:
    left = _group_team_holders(x, e.changes["members"], e.target_id)
    for user_id in e.changes["members"]:
        x.group_members.get(e.target_id, set()).discard(user_id)
        _drop(x, user_id, lambda key: key[2] != e.target_id)
    _settle_defaults(x, e.changes["members"], e.changes.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def _grants_rederived(x: Expected, e: Row[Any]) -> None:
    """Every member of the group now holds exactly the grants this event names from it (group_sync switched)."""
    c, group_id = e.changes, e.target_id
    left = _group_team_holders(x, x.group_members.get(group_id, set()), group_id)
    for user_id in x.group_members.get(group_id, set()):
        _drop(x, user_id, lambda key: key[2] != group_id)
        grants = x.grants.get(user_id)
        if grants is not None and c.get("team_id"):
            grants[(c["team_id"], c["source"], group_id)] = c["team_role"]
    _settle_defaults(x, x.group_members.get(group_id, set()), c.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def _left_teams(x: Expected, e: Row[Any]) -> None:
    """The keys of the teams a change of group grants took from their holders (since 2026-12-06; before,
    such keys stayed active while the key check refused them): keys.revoke_keys_of_teams_left."""
    _key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)


IDP_SOURCES = (GrantSource.SCIM, GrantSource.SAML)


def _group_team_holders(x: Expected, user_ids: Iterable[str], group_id: str) -> set[str]:
    """Those of `user_ids` holding a team grant from the group, before the event takes its grants."""
    return {user_id for user_id in user_ids
            if any(key[0] is not None and key[2] == group_id for key in x.grants.get(user_id, {}))}


def _settle_defaults(x: Expected, user_ids: Iterable[str], defaults: dict[str, Any] | None, *,
                     left_group_team: set[str]) -> None:
    """identity.group_defaults' rule, after a change of group grants whose event names `defaults` (since
    2026-12; before, the provisioned defaults stayed beside group grants): while a group gives an org
    role (a team), the SCIM or SAML grant of the default role (the Default team) is gone; once none
    does, a member holding no org grant (no grant in the Default team) gets it back; the Default team
    only if the event took a group's team from them (`left_group_team`), where `defaults` says
    `team_back` (since 2026-12-06; before, whoever the event named)."""
    if not defaults:
        return
    role, default_team = defaults["org_role"], defaults["team_id"]
    for user_id in user_ids:
        grants, source = x.grants.get(user_id), x.user_sources.get(user_id)
        if grants is None:
            continue
        by_group = [key for key in grants if key[1] in IDP_SOURCES and key[2] != ""]
        may_rejoin = "team_back" not in defaults or user_id in left_group_team
        for team, restored in ((None, role), (default_team, Role.MEMBER)):
            if any((key[0] is None) == (team is None) for key in by_group):
                for key in [key for key in grants if key[0] == team and key[1] in IDP_SOURCES and key[2] == ""]:
                    del grants[key]
            elif (source in IDP_SOURCES and not any(key[0] == team for key in grants)
                  and (team is None or may_rejoin)):
                grants[(team, source, "")] = restored


def _mapping_created(x: Expected, e: Row[Any]) -> None:
    _entity(x.mappings, e, created=True).set(e, exists=True, **e.changes)


def _mapping_deleted(x: Expected, e: Row[Any]) -> None:
    _entity(x.mappings, e).set(e, exists=False)


def _mapping_updated(x: Expected, e: Row[Any]) -> None:
    _entity(x.mappings, e).set(e, **{name: _after(change) for name, change in e.changes.items()
                                     if isinstance(change, dict)})


def _org_deleted(x: Expected, e: Row[Any]) -> None:
    """The members, tokens and invitations have events of their own; the keys no member held are named here."""
    _key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.ORG_DELETED)


# Credentials and invitations.

def _key_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    x.key_ids[e.target_display] = e.target_id
    # An event before migration 0024 does not say the cap that migration gave the key: left unchecked.
    cap = {"role_cap": c["role_cap"]} if "role_cap" in c else {}
    _entity(x.api_keys, e, created=True).set(e, status=KeyStatus.ACTIVE, status_reason=None, user_id=c["user_id"],
                                             team_id=c["team_id"], scopes=sorted(c["scopes"]), **cap)


def _key_revoked(x: Expected, e: Row[Any]) -> None:
    _entity(x.api_keys, e).set(e, status=KeyStatus.REVOKED,
                                      status_reason=e.changes.get("reason", KeyStatusReason.MANUAL))


def _key_status(x: Expected, e: Row[Any], prefixes: Iterable[str], status: str, reason: str | None) -> None:
    """Keys named by prefix in a member's or team's event; a key made before the retained log by prefix alone."""
    for prefix in prefixes:
        key_id = x.key_ids.get(prefix)
        entity = x.api_keys[key_id] if key_id else x.keys_by_prefix.setdefault(prefix, Entity())
        entity.set(e, status=status, status_reason=reason)


def _token_created(x: Expected, e: Row[Any]) -> None:
    _entity(x.scim_tokens, e, created=True).set(e, revoked=False, name=e.changes["name"], prefix=e.target_display)


def _token_revoked(x: Expected, e: Row[Any]) -> None:
    _entity(x.scim_tokens, e).set(e, revoked=True)


def _client_created(x: Expected, e: Row[Any]) -> None:
    _entity(x.scim_clients, e, created=True).set(e, revoked=False, name=e.changes["name"],
                                                 client_id=e.target_display)


def _client_revoked(x: Expected, e: Row[Any]) -> None:
    _entity(x.scim_clients, e).set(e, revoked=True)


def _invited(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    _entity(x.invitations, e, created=True).set(e, status=InvitationStatus.PENDING, email=c["email"], role=c["role"],
                                                team_id=c["team_id"])


def _invitation_status(x: Expected, e: Row[Any]) -> None:
    _entity(x.invitations, e).set(e, status=_after(e.changes["status"]))


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
    Action.TEAM_CREATED: _team_created,
    Action.TEAM_RENAMED: _team_renamed,
    Action.TEAM_DELETED: _team_deleted,
    Action.GROUP_CREATED: _group_created,
    Action.GROUP_UPDATED: _group_updated,
    Action.GROUP_DELETED: _group_deleted,
    Action.GROUP_MEMBERS_ADDED: _members_added,
    Action.GROUP_MEMBERS_REMOVED: _members_removed,
    Action.GROUP_GRANTS_REDERIVED: _grants_rederived,
    Action.GROUP_MAPPING_CREATED: _mapping_created,
    Action.GROUP_MAPPING_DELETED: _mapping_deleted,
    Action.GROUP_MAPPING_UPDATED: _mapping_updated,
    Action.ORG_DELETED: _org_deleted,
    Action.API_KEY_CREATED: _key_created,
    Action.API_KEY_REVOKED: _key_revoked,
    Action.SCIM_TOKEN_CREATED: _token_created,
    Action.SCIM_TOKEN_REVOKED: _token_revoked,
    Action.SCIM_CLIENT_CREATED: _client_created,
    Action.SCIM_CLIENT_REVOKED: _client_revoked,
    Action.INVITATION_CREATED: _invited,
    Action.INVITATION_ACCEPTED: _invitation_status,
    Action.INVITATION_DECLINED: _invitation_status,
    Action.INVITATION_EXPIRED: _invitation_status,
    Action.INVITATION_RESENT: _invitation_status,
    Action.INVITATION_REVOKED: _invitation_status,
}
