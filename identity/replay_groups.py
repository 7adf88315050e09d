"""Replaying what teams, IdP groups, their mapping rules and an org's deletion did (identity.replay).

A group's events carry what the group change did to its members' grants, the provisioned
defaults that gave way or came back (identity.group_defaults) and the keys revoked with a team
left; each handler here replays one such event into identity.replay_state's Expected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Row

from identity.replay_state import Expected, changed_to, drop_grants, entity_of, set_key_status
from identity.vocabulary import GrantSource, KeyStatus, KeyStatusReason, Role


def team_created(x: Expected, e: Row[Any]) -> None:
    entity_of(x.teams, e, created=True).set(e, exists=True, name=e.changes["name"])


def team_renamed(x: Expected, e: Row[Any]) -> None:
    entity_of(x.teams, e).set(e, name=changed_to(e.changes["name"]))


def team_deleted(x: Expected, e: Row[Any]) -> None:
    entity_of(x.teams, e).set(e, exists=False)
    grouped = [user_id for user_id, grants in x.grants.items()
               if any(key[0] == e.target_id and key[2] != "" for key in grants)]
    for user_id in list(x.grants):
        drop_grants(x, user_id, lambda key: key[0] != e.target_id)
    _settle_defaults(x, grouped, e.changes.get("defaults"), left_group_team=set(grouped))
    set_key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.TEAM_DELETED)
    set_key_status(x, e, e.changes.get("keys_revoked_left_team", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)
    for entity in (*x.api_keys.values(), *x.invitations.values()):  # their rows stay, the team unset
        if entity.fields.get("team_id") == e.target_id:
            entity.set(e, team_id=None)


def group_created(x: Expected, e: Row[Any]) -> None:
    c = e.changes
    entity_of(x.groups, e, created=True).set(e, exists=True, display_name=c["display_name"],
                                           external_id=c["external_id"])
    x.group_members[e.target_id] = set()


def group_updated(x: Expected, e: Row[Any]) -> None:
    entity_of(x.groups, e).set(e, **{name: change["after"] for name, change in e.changes.items()
                                   if name in ("display_name", "external_id") and isinstance(change, dict)})


def group_deleted(x: Expected, e: Row[Any]) -> None:
    """The group and its memberships go; grants of members it kept (a protected last owner) stay."""
    entity_of(x.groups, e).set(e, exists=False)
    x.group_members.pop(e.target_id, None)


def members_added(x: Expected, e: Row[Any]) -> None:
    """A group's grants for these members are exactly what this event names (a re-applied rule included).

    Events name the grants' source since 2026-12; before, every group grant was labelled `scim`.
    """
    c, group_id = e.changes, e.target_id
    source = c.get("source", GrantSource.SCIM)
    left = _group_team_holders(x, c["members"], group_id)  # a re-applied rule takes the team it gave first
    for user_id in c["members"]:
        x.group_members.get(group_id, set()).add(user_id)
        drop_grants(x, user_id, lambda key: key[2] != group_id)
        grants = x.grants.get(user_id)
        if grants is None:
            continue
        if c.get("team_id"):
            grants[(c["team_id"], source, group_id)] = c["team_role"]
        if c.get("org_role"):
            grants[(None, source, group_id)] = c["org_role"]
    _settle_defaults(x, c["members"], c.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def members_removed(x: Expected, e: Row[Any]) -> None:
    left = _group_team_holders(x, e.changes["members"], e.target_id)
    for user_id in e.changes["members"]:
        x.group_members.get(e.target_id, set()).discard(user_id)
        drop_grants(x, user_id, lambda key: key[2] != e.target_id)
    _settle_defaults(x, e.changes["members"], e.changes.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def grants_rederived(x: Expected, e: Row[Any]) -> None:
    """Every member of the group now holds exactly the grants this event names from it (group_sync switched)."""
    c, group_id = e.changes, e.target_id
    left = _group_team_holders(x, x.group_members.get(group_id, set()), group_id)
    for user_id in x.group_members.get(group_id, set()):
        drop_grants(x, user_id, lambda key: key[2] != group_id)
        grants = x.grants.get(user_id)
        if grants is not None and c.get("team_id"):
            grants[(c["team_id"], c["source"], group_id)] = c["team_role"]
    _settle_defaults(x, x.group_members.get(group_id, set()), c.get("defaults"), left_group_team=left)
    _left_teams(x, e)


def _left_teams(x: Expected, e: Row[Any]) -> None:
    """The keys of the teams a change of group grants took from their holders (since 2026-12-06; before,
    such keys stayed active while the key check refused them): key_revocation.revoke_keys_of_teams_left."""
    set_key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)


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


def mapping_created(x: Expected, e: Row[Any]) -> None:
    entity_of(x.mappings, e, created=True).set(e, exists=True, **e.changes)


def mapping_deleted(x: Expected, e: Row[Any]) -> None:
    entity_of(x.mappings, e).set(e, exists=False)


def mapping_updated(x: Expected, e: Row[Any]) -> None:
    entity_of(x.mappings, e).set(e, **{name: changed_to(change) for name, change in e.changes.items()
                                     if isinstance(change, dict)})


def org_deleted(x: Expected, e: Row[Any]) -> None:
    """The members, tokens and invitations have events of their own; the keys no member held are named here."""
    set_key_status(x, e, e.changes.get("keys_revoked", []), KeyStatus.REVOKED, KeyStatusReason.ORG_DELETED)
