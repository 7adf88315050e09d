"""IdP groups (DESIGN.md section 3.3), for SCIM Groups and SAML group claims: made, renamed,
deleted, their rule re-applied (`reapply`), and a SCIM change of one applied whole (`change_group`).

Who is in a group and what that gives (add, remove, replace members; `grants_of`) is
identity.group_membership's, which this module calls: a group is made with its first members and
deleted with its members' grants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from identity import group_versions, owners, seats, teams
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound
from identity.grants import record_taken
from identity.group_locks import lock_group, locked_groups
from identity.group_membership import add_members, lock_live, lock_members, remove_members, replace_members
from identity.group_rules import governing_rule, pin_rule
from identity.group_versions import touch
from identity.lookups import group_target
from identity.models import GroupMapping, IdpGroup, IdpGroupMember, RoleGrant, Team
from identity.names import name_key
from identity.roles import authorize
from identity.vocabulary import GrantSource


def get_group(session: Session, org_id: str, group_id: str) -> IdpGroup:
    """Return the org's group, or raise NotFound."""
    group = session.get(IdpGroup, group_id)
    if group is None or group.org_id != org_id:
        raise NotFound(f"no group {group_id!r} in this org", group_id=group_id)
    return group


def _ensure_free_name(session: Session, org_id: str, name: str, keep: str | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidValue("displayName is required", field="displayName")
    clash = session.scalars(select(IdpGroup.id).where(
        IdpGroup.org_id == org_id, IdpGroup.display_name_key == name_key(name))).first()
    if clash is not None and clash != keep:
        raise Conflict(f"a group named {name!r} already exists", field="displayName")
    return name


def create_group(session: Session, actor: Actor, org_id: str, *, display_name: str,
                 external_id: str | None = None, attributes: dict[str, Any] | None = None,
                 member_ids: Iterable[str] = (), adopt_claimed: bool = False, from_claim: bool = False) -> IdpGroup:
    """Create an IdP group (SCIM POST /Groups), with its first members.

    With `adopt_claimed` (SCIM's create), a group that a SAML sign-in's claim made before
    provisioning was turned on, named by the same externalId or displayName, becomes this one
    (`_adopt`): SSO set up before SCIM neither makes a second group for one IdP group (Entra's
    claims are its groups' object ids, its SCIM externalId) nor refuses the IdP's group as a
    duplicate name (Okta's claims are the groups' names). `from_claim` marks a group a claim makes."""
    authorize(actor, "teams.manage", org_id=org_id)
    seats.lock_org(session, org_id)  # serialises the name check with parallel creates
    claimed = _claimed_by_sign_in(session, org_id, display_name, external_id) if adopt_claimed else None
    if claimed is not None:
        return _adopt(session, actor, claimed, display_name, external_id, attributes, list(member_ids))
    display_name = _ensure_free_name(session, org_id, display_name)
    now = clock.now()
    group = IdpGroup(id=str(uuid.uuid4()), org_id=org_id, display_name=display_name, external_id=external_id,
                     attributes=attributes or {}, created_at=now, updated_at=now, version=1, from_claim=from_claim)
    pin_rule(session, group)
    session.add(group)
    session.flush()
    group_versions.created(session, group)
    record(session, actor, Action.GROUP_CREATED, group_target(group),
           {"display_name": display_name, "external_id": external_id}, org_id=org_id)
    add_members(session, actor, org_id, group.id, list(member_ids))
    return group


def _claimed_by_sign_in(session: Session, org_id: str, display_name: str, external_id: str | None) -> IdpGroup | None:
    """The group a SAML claim made (`from_claim`, group_claims) that a SCIM create names by its
    externalId or its displayName; None when there is none. A group SCIM made is never adopted,
    whatever its names (a second create of its name stays a 409)."""
    names = [IdpGroup.display_name_key == name_key((display_name or "").strip())]
    if external_id:
        names.append(IdpGroup.external_id == external_id)
    return session.scalars(select(IdpGroup).where(
        IdpGroup.org_id == org_id, or_(*names), IdpGroup.from_claim.is_(True),
    ).order_by(IdpGroup.created_at, IdpGroup.id).limit(1)).first()


def _adopt(session: Session, actor: Actor, group: IdpGroup, display_name: str, external_id: str | None,
           attributes: dict[str, Any] | None, member_ids: list[str]) -> IdpGroup:
    """Make a group a claim made the IdP's SCIM group: its name, externalId and attributes as the
    IdP sent them (audited as the group's update), its members added; what it grants re-derived
    when another rule now matches it (update_group)."""
    lock_group(session, group.org_id, group.id)
    group.from_claim = False  # the IdP's SCIM group from now on
    update_group(session, actor, group.org_id, group.id, display_name=display_name, external_id=external_id,
                 attributes=attributes or {}, clear_external_id=external_id is None)
    add_members(session, actor, group.org_id, group.id, member_ids)
    return group


def update_group(session: Session, actor: Actor, org_id: str, group_id: str, *, display_name: str | None = None,
                 external_id: str | None = None, attributes: dict[str, Any] | None = None,
                 clear_external_id: bool = False, check: Callable[[IdpGroup], None] | None = None) -> IdpGroup:
    """Rename a group or change its other attributes; a mirrored team keeps its id and follows the name.

    None leaves a field as it is; `clear_external_id` removes the externalId (a SCIM PUT without
    it, or a PATCH `remove`): rules then match the group by its display name (DESIGN 3.3). A new
    name or id keeps the rule the group is pinned to (governing_rule) unless it makes a different
    rule match; then every member's grants are re-derived from that rule (reapply), old members
    and new alike. `check` sees the group as read under its lock, before anything changes, and may
    refuse by raising.
    """
    authorize(actor, "teams.manage", org_id=org_id)
    if _may_rename(session, org_id, group_id, display_name, external_id, clear_external_id):
        seats.lock_org(session, org_id)  # first (reapply, below, needs it): then the group's lock
    group = lock_group(session, org_id, group_id)
    if check is not None:
        check(group)
    diff: dict[str, Any] = {}
    if display_name is not None and display_name != group.display_name:
        display_name = _ensure_free_name(session, org_id, display_name, keep=group.id)
        diff["display_name"] = {"before": group.display_name, "after": display_name}
        group.display_name = display_name
        if group.team_id is not None and not _name_taken_by_other_team(session, group):
            teams.rename_team(session, actor, org_id, group.team_id, display_name)
    if (external_id is not None or clear_external_id) and (external_id or None) != group.external_id:
        diff["external_id"] = {"before": group.external_id, "after": external_id or None}
        group.external_id = external_id or None
    if attributes is not None and attributes != group.attributes:
        diff["attributes"] = sorted(k for k in set(group.attributes) | set(attributes)
                                    if group.attributes.get(k) != attributes.get(k))
        group.attributes = attributes
    if diff:
        touch(session, group)
        record(session, actor, Action.GROUP_UPDATED, group_target(group), diff, org_id=org_id)
    renamed = "display_name" in diff or "external_id" in diff
    if renamed and _rule_id(governing_rule(session, group)) != group.mapping_id:
        reapply(session, actor, group)
    return group


def lock_for_change(session: Session, org_id: str, group_id: str, *, may_rename: bool) -> IdpGroup:
    """Lock a group for a change planned from its state as read under the lock (a SCIM PATCH): the
    org's lock first when the change may give it a new name or id, as `update_group` then takes it
    (identity.group_locks' order: the org, then groups), or a member shown anew in the group, which
    holds the org's lock and waits for the group's, would deadlock with it."""
    if may_rename:
        seats.lock_org(session, org_id)
    return lock_group(session, org_id, group_id)


def _rule_id(rule: GroupMapping | None) -> str | None:
    return rule.id if rule is not None else None


def _may_rename(session: Session, org_id: str, group_id: str, display_name: str | None, external_id: str | None,
                clear_external_id: bool) -> bool:
    """Tell whether a change may set a new name or immutable id, and so takes the org's lock before
    the group's: whenever it gives one, unless this transaction holds the group locked already (a
    SCIM PATCH, `lock_for_change`; a claim's group adopted): then as the group reads under its lock.
    Not from a read before the lock: a rename committed meanwhile may make the same name new again
    (a SCIM PUT, which always gives a name, takes the org's lock). A change of its members or
    attributes alone takes no org lock."""
    if display_name is None and external_id is None and not clear_external_id:
        return False
    if group_id not in locked_groups(session):
        return True
    group = get_group(session, org_id, group_id)
    return (display_name is not None and display_name != group.display_name) or (
        (external_id is not None or clear_external_id) and (external_id or None) != group.external_id)


def _name_taken_by_other_team(session: Session, group: IdpGroup) -> bool:
    return session.scalars(select(Team.id).where(
        Team.org_id == group.org_id, Team.name_key == group.display_name_key,
        Team.id != group.team_id)).first() is not None


def delete_group(session: Session, actor: Actor, org_id: str, group_id: str) -> None:
    """Delete a group: its members lose what it granted; its mirrored team stays for an admin to decide."""
    authorize(actor, "teams.manage", org_id=org_id)
    group = lock_group(session, org_id, group_id)
    members = list(session.scalars(select(IdpGroupMember.user_id).where(IdpGroupMember.group_id == group.id)))
    removed = remove_members(session, actor, org_id, group.id, members)
    session.execute(delete(IdpGroupMember).where(IdpGroupMember.group_id == group.id))
    record(session, actor, Action.GROUP_DELETED, group_target(group),
           {"display_name": group.display_name, "members_removed": len(removed)}, org_id=org_id)
    session.delete(group)


def reapply(session: Session, actor: Actor, group: IdpGroup) -> None:
    """Re-derive what a group's members get after its rule changed: drop its grants, grant anew.

    Each member's new grants keep the source of its old ones; a member the old rule gave nothing
    is taken as SCIM's (a membership does not record its channel). Refused (PermissionDenied) when
    it takes an owner out of a team or lowers their role there and `actor` may not do that by hand
    (owners.refuse_owner_team_loss): an admin's rule edit acts on whom the rule reaches.
    """
    seats.lock_org(session, group.org_id)  # first: it serialises the last-owner check
    lock_group(session, group.org_id, group.id)
    # The members' rows before their grants (identity.group_locks): a change of one member's team
    # grants (teams.remove_team_member) holds the row and then deletes its grants; taking the grants
    # first and the rows after (add_members, below) deadlocked with it.
    members, live = lock_members(session, group.org_id, group.id)  # add_members, below, reads them no more
    owners_before = owners.owners_team_roles(session, actor, group.org_id)
    pin_rule(session, group)  # a group without members too: those added later get what the rule gives
    sources: dict[str, GrantSource] = {}
    left_team: set[str] = set()  # whose team grant from the group goes here: the Default team may come back
    ids: list[int] = []
    for grant_id, user_id, source, team_id in session.execute(select(
            RoleGrant.id, RoleGrant.user_id, RoleGrant.source, RoleGrant.team_id).where(
            RoleGrant.source_ref == group.id)):
        ids.append(grant_id)
        sources[user_id] = source
        if team_id is not None:
            left_team.add(user_id)
    session.execute(delete(RoleGrant).where(RoleGrant.source_ref == group.id))
    record_taken(session, ids)  # those read under the group's lock: no other change adds or takes one meanwhile
    by_source: dict[GrantSource, list[str]] = {}
    for user_id in members:
        by_source.setdefault(sources.get(user_id, GrantSource.SCIM), []).append(user_id)
    session.execute(delete(IdpGroupMember).where(IdpGroupMember.group_id == group.id))
    for source, joining in sorted(by_source.items()):
        add_members(session, actor, group.org_id, group.id, joining, source=source, left_group_team=left_team,
                    live=live)
    owners.ensure_an_owner_remains(session, group.org_id)  # a rule that no longer makes the last owner one
    owners.refuse_owner_team_loss(session, actor, group.org_id, owners_before)  # an owner's team: theirs to lose


@dataclass(frozen=True)
class GroupChange:
    """What one change of a group sets (a SCIM PUT or PATCH): None leaves a field as it is.

    `members` replaces the members exactly; `removed` and `added` are deltas applied after it,
    in that order (DESIGN 3.3: a delta touches only the rows it names).
    """

    display_name: str | None = None
    external_id: str | None = None
    clear_external_id: bool = False
    attributes: dict[str, Any] | None = None
    members: tuple[str, ...] | None = None
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()


def change_group(session: Session, actor: Actor, org_id: str, group_id: str, change: GroupChange,
                 check: Callable[[IdpGroup], None] | None = None) -> IdpGroup:
    """Apply a group's new attributes, then its members, in one unit of work.

    The attributes go first so that the members added are granted what the group, renamed or
    re-identified, maps to now. `check` as for `update_group`.
    """
    group = update_group(session, actor, org_id, group_id, display_name=change.display_name,
                         external_id=change.external_id, attributes=change.attributes,
                         clear_external_id=change.clear_external_id, check=check)
    live = None
    if change.added and (change.members is not None or change.removed):
        # The rows of those added before any removal takes the org's owner grants (lock_live; the
        # read add_members makes of them, made earlier): a demotion holds its row and then takes them.
        live = lock_live(session, org_id, list(dict.fromkeys(change.added)))
    if change.members is not None:
        replace_members(session, actor, org_id, group_id, list(change.members))
    if change.removed:
        remove_members(session, actor, org_id, group_id, list(change.removed))
    if change.added:
        add_members(session, actor, org_id, group_id, list(change.added), live=live)
    return group
