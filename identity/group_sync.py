"""The org's `group_sync` setting applied to the groups no rule governs (DESIGN.md section 3.3).

Under `mirror` each such group's members get the `member` role in the group's own team; under
`mapped` they get nothing from it. identity.group_membership applies the setting as members
join; switching it re-derives every such group at once (`rederive_unruled_groups`), for the members already there.
"""

from __future__ import annotations

from sqlalchemy import Select, case, delete, insert, literal, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from identity import group_membership, owners, seats
from identity.actions import Action
from identity.grants import record_taken
from identity.group_defaults import defaults_of, settle_defaults
from identity.group_locks import record_locked
from identity.lookups import group_target
from identity.models import ApiKey, IdpGroup, IdpGroupMember, RoleGrant
from identity.vocabulary import GrantSource, Role


def _unruled(org_id: str) -> Select[str]:
    """The org's groups no rule governs (group_rules.governing_rule pins a group's rule on it)."""
    return select(IdpGroup.id).where(IdpGroup.org_id == org_id, IdpGroup.mapping_id.is_(None))


def rederive_unruled_groups(session: Session, actor: Actor, org_id: str) -> int:
    """Re-derive what the groups no rule governs give, once the org's `group_sync` changed; return
    how many groups with members were re-derived, each audited as `group.grants_rederived`.

    Set-based (an org may hold 10,000 groups and 1,000,000 members): their grants go in one DELETE
    and, under `mirror`, come back in one INSERT ... SELECT; only the groups themselves are visited
    one by one (a mirror team made for each that has none, its event). A membership does not record
    its channel: a grant given anew is SAML's for a group a sign-in's claim made, SCIM's otherwise.
    The members' keys for a team they are no longer in are revoked (group_defaults.settle_defaults),
    each named in the event of one group its holder is in (`keys_revoked`). A switch that takes an
    owner out of a team (or lowers their role there) is refused to an actor who may not do that by
    hand (owners.refuse_owner_team_loss: an admin), the whole change rolled back.
    Locks: the org's first, then the groups' in id order (group_locks.lock_group).
    """
    org = seats.lock_org(session, org_id)
    unruled = list(session.scalars(select(IdpGroup).where(IdpGroup.id.in_(_unruled(org_id)))
                                   .order_by(IdpGroup.id).with_for_update(key_share=True)))
    record_locked(session, (group.id for group in unruled))
    owners_before = owners.owners_team_roles(session, actor, org_id)
    record_taken(session, session.scalars(delete(RoleGrant).where(RoleGrant.source_ref.in_(_unruled(org_id)))
                                   .returning(RoleGrant.id)))
    mirror = org.group_sync == "mirror"
    populated = set(session.scalars(select(IdpGroupMember.group_id).where(
        IdpGroupMember.group_id.in_(_unruled(org_id))).distinct()))
    for group in unruled:
        if mirror and group.id in populated:
            group_membership.mirror_team(session, actor, group)
    session.flush()
    if mirror:
        source = case((IdpGroup.from_claim.is_(True), literal(GrantSource.SAML.value)),
                      else_=literal(GrantSource.SCIM.value))
        session.execute(insert(RoleGrant).from_select(
            ["org_id", "user_id", "team_id", "role", "source", "source_ref", "created_at"],
            select(IdpGroup.org_id, IdpGroupMember.user_id, IdpGroup.team_id, literal(Role.MEMBER.value), source,
                   IdpGroup.id, literal(clock.now())).join(IdpGroupMember, IdpGroupMember.group_id == IdpGroup.id)
            .where(IdpGroup.id.in_(_unruled(org_id)), IdpGroup.team_id.is_not(None))))
    defaults = defaults_of(session, org_id)
    members = select(IdpGroupMember.user_id).where(IdpGroupMember.group_id.in_(_unruled(org_id)))
    # Under `mapped` the members of the groups that had a mirror team lost it: Default may come back to them.
    left = () if mirror else members.join(IdpGroup, IdpGroup.id == IdpGroupMember.group_id).where(
        IdpGroup.team_id.is_not(None))
    revoked = settle_defaults(session, org_id, members, defaults, left_group_team=left)
    owners.refuse_owner_team_loss(session, actor, org_id, owners_before)  # as taking them out by hand would be
    named = _keys_by_group(session, org_id, revoked, {group.id: group.team_id for group in unruled})
    for group in unruled:
        if group.id in populated:
            record(session, actor, Action.GROUP_GRANTS_REDERIVED, group_target(group), {
                "group_sync": org.group_sync, "team_id": group.team_id if mirror else None,
                "team_role": Role.MEMBER if mirror else None, "org_role": None,
                "source": GrantSource.SAML if group.from_claim else GrantSource.SCIM, "defaults": defaults,
                "keys_revoked": named.get(group.id, [])}, org_id=org_id)
    return len(populated)


def _keys_by_group(session: Session, org_id: str, prefixes: list[str],
                   teams: dict[str, str | None]) -> dict[str, list[str]]:
    """Name each key the switch revoked in the event of one group its holder is in: the group whose
    team the key was for, else the first by id (a Default-team key that a mirror team displaced)."""
    chosen: dict[str, str] = {}
    for start in range(0, len(prefixes), 500):
        for prefix, team_id, group_id in session.execute(
                select(ApiKey.prefix, ApiKey.team_id, IdpGroupMember.group_id)
                .join(IdpGroupMember, IdpGroupMember.user_id == ApiKey.user_id)
                .where(ApiKey.prefix.in_(prefixes[start:start + 500]), IdpGroupMember.group_id.in_(_unruled(org_id)))
                .order_by(IdpGroupMember.group_id)):
            its_team = teams.get(group_id) == team_id
            if prefix not in chosen or (its_team and teams.get(chosen[prefix]) != team_id):
                chosen[prefix] = group_id
    named: dict[str, list[str]] = {}
    for prefix in prefixes:
        named.setdefault(chosen[prefix], []).append(prefix)
    return named
