"""Mapping rules (DESIGN.md section 3.3): IdP group -> team and team role, and/or org role.

A rule matches a group by its immutable id first, by display name as a fallback; creating,
editing or deleting one re-derives at once what the matching groups' members get
(`groups.reapply`). A rule that grants `owner` is IdP trust and owners' business both, and so is
any change of a rule that reaches a group an owners' rule matches or is pinned to, or that names a
group an owners' rule names before the IdP has pushed it: which rule governs a group is decided by
rank (group_rules.governing_rule), so such a change can take the group from the owners' rule
(demoting the owners it made) or hand it to it (making owners), now or when the group comes.
"""

from __future__ import annotations

import uuid

from sqlalchemy import and_, bindparam, false, func, or_, select, union_all
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import group_rules, groups, seats, teams
from identity.actions import Action
from identity.errors import InvalidValue, NotFound, PermissionDenied
from identity.lookups import lock_team
from identity.models import GroupMapping, IdpGroup
from identity.names import name_key
from identity.roles import ROLES, authorize, parse_role, refusal
from identity.vocabulary import Role


def groups_matching(session: Session, rule: GroupMapping) -> list[IdpGroup]:
    """Return the groups `rule` governs now (group_rules.governing_rule): those it matches or is pinned to,
    in id order (group_locks.lock_group)."""
    candidates = session.scalars(select(IdpGroup).join(GroupMapping, and_(
        GroupMapping.id == rule.id, or_(group_rules.rule_matches(IdpGroup.external_id, IdpGroup.display_name_key),
                                        IdpGroup.mapping_id == rule.id),
    )).where(IdpGroup.org_id == rule.org_id).order_by(IdpGroup.id))
    return [group for group in candidates if group_rules.governing_rule(session, group) is rule]


def _authorize_owner_grant(actor: Actor, org_id: str, org_role: str | None) -> None:
    """A rule that grants (or granted) owner makes owners of whoever the IdP puts in the group:
    IdP trust and owners' business both (DESIGN 3.2)."""
    if org_role is not None and org_role.strip().lower() == Role.OWNER:
        authorize(actor, "trust.manage", org_id=org_id)
        authorize(actor, "owners.manage", org_id=org_id)


def _authorize_owners_groups(session: Session, actor: Actor, org_id: str, names: list[tuple[str | None, str | None]],
                             rule_id: str | None = None) -> None:
    """Refuse a rule change that reaches an owners' group to an actor who may not act on owners.

    `names`: the (immutable id, display name) pairs the rule names, before and after the change;
    `rule_id`: the rule changed, whose pinned groups it reaches too. A group is an owners' group
    when a rule granting owner matches it or it is pinned to one: whichever rule outranks the
    other there, a change of the rules that reach it moves the owner role (DESIGN 3.2: acting on
    owners needs `owners.manage`). So is a group the IdP has not pushed yet that these names and a
    rule granting owner would both match: once it comes, the same ranking decides. One query,
    whatever the groups' sizes.
    """
    why = refusal(actor, "owners.manage", org_id=org_id)
    if why is None:
        return
    reached = [IdpGroup.mapping_id == rule_id] if rule_id is not None else []
    shared = []  # the owners' rules that match some group these names match, whether it exists or not
    for external_id, display_name in names:  # as group_rules.rule_matches reads a rule, from the group's side
        if external_id:
            reached.append(IdpGroup.external_id == external_id)
            shared.append(GroupMapping.group_external_id == external_id)
        if display_name:  # a rule naming an id matches by name only a group without one
            by_name = IdpGroup.display_name_key == name_key(display_name)
            reached.append(by_name if external_id is None else and_(by_name, IdpGroup.external_id.is_(None)))
            # from the rules' side, with no group to ask: two rules of one display name both match a
            # group of that name pushed without an immutable id, whatever ids they name
            shared.append(GroupMapping.group_display_name_key == name_key(display_name))
    governs = or_(group_rules.rule_matches(IdpGroup.external_id, IdpGroup.display_name_key),
                  IdpGroup.mapping_id == GroupMapping.id)
    owners_rule = and_(GroupMapping.org_id == org_id, GroupMapping.org_role == Role.OWNER)
    pushed = select(IdpGroup.display_name).join(GroupMapping, and_(
        GroupMapping.org_id == IdpGroup.org_id, owners_rule, governs,
    )).where(IdpGroup.org_id == org_id, or_(false(), *reached))
    named = select(func.coalesce(GroupMapping.group_display_name, GroupMapping.group_external_id)).where(
        owners_rule, or_(false(), *shared))
    owners_group = session.scalars(union_all(pushed, named).limit(1)).first()
    if owners_group is not None:
        raise PermissionDenied(f"{actor.type} {actor.display!r} may not change the rules of the IdP group "
                               f"{owners_group!r}: a rule that grants owner matches it or is pinned to it, and "
                               f"which rule governs it decides who is an owner ({why})",
                               action="owners.manage", group=owners_group)


def create_mapping(session: Session, actor: Actor, org_id: str, *, group_external_id: str | None = None,
                   group_display_name: str | None = None, team_id: str | None = None,
                   team_role: str | None = None, org_role: str | None = None) -> GroupMapping:
    """Add a rule (IdP group -> team and team role, org role) and apply it to the group's members now."""
    authorize(actor, "teams.manage", org_id=org_id)
    _authorize_owner_grant(actor, org_id, org_role)
    if not (group_external_id or group_display_name):
        raise InvalidValue("a rule names the group by its immutable id or its display name", field="group")
    if not (team_id or org_role):
        raise InvalidValue("a rule grants a team, an org role, or both", field="team_id")
    seats.lock_org(session, org_id)  # first, as every change of the rules (_locked_rule)
    if team_id:
        lock_team(session, org_id, team_id)
    _authorize_owners_groups(session, actor, org_id, [(group_external_id or None, group_display_name or None)])
    rule = GroupMapping(
        id=str(uuid.uuid4()), org_id=org_id, group_external_id=group_external_id or None,
        group_display_name=group_display_name or None, team_id=team_id or None,
        team_role=parse_role(team_role or Role.MEMBER, allowed=teams.TEAM_ROLES) if team_id else None,
        org_role=parse_role(org_role, allowed=ROLES) if org_role else None,
        created_at=clock.now())
    session.add(rule)
    session.flush()
    record(session, actor, Action.GROUP_MAPPING_CREATED, Target("group_mapping", rule.id,
                                                           group_display_name or group_external_id or ""),
           {"group_external_id": rule.group_external_id, "group_display_name": rule.group_display_name,
            "team_id": rule.team_id, "team_role": rule.team_role, "org_role": rule.org_role}, org_id=org_id)
    for group in groups_matching(session, rule):
        groups.reapply(session, actor, group)
    return rule


def reapply_owner_rules(session: Session, actor: Actor, org_id: str) -> None:
    """Re-derive what the groups of every rule that names `owner` give, once the org's
    `idp_may_grant_owner` changed: such a rule grants owner only while it is on, admin otherwise
    (group_membership.grants_of), for the members the IdP put there before the change as for those after.
    The caller holds the org's lock; a change that would leave no active owner is refused."""
    rules = session.scalars(select(GroupMapping).where(GroupMapping.org_id == org_id,
                                                       GroupMapping.org_role == Role.OWNER))
    matched = {group.id: group for rule in rules for group in groups_matching(session, rule)}
    for group_id in sorted(matched):  # in one order (group_locks.lock_group)
        groups.reapply(session, actor, matched[group_id])


# The rule's row locked and read again, the session's copy refreshed (after the org's lock). FOR NO KEY
# UPDATE: a group pinned to it meanwhile (its foreign key's KEY SHARE) does not wait for it.
_LOCK_RULE = (select(GroupMapping).where(GroupMapping.id == bindparam("mapping_id")).with_for_update(key_share=True)
              .execution_options(populate_existing=True))


def _locked_rule(session: Session, org_id: str, mapping_id: str) -> GroupMapping:
    """Return the org's rule as committed, locked until the transaction ends, or raise NotFound.

    The org's lock first (identity.group_locks' order; re-deriving the groups takes it anyway): two
    changes of the rules, or of one rule, run one after the other, and the second reads the rule as
    the first left it (deleted included) and re-derives the groups from that, never from a copy
    read before the first committed.
    """
    seats.lock_org(session, org_id)
    rule = session.execute(_LOCK_RULE, {"mapping_id": mapping_id}).scalar_one_or_none()
    if rule is None or rule.org_id != org_id:
        raise NotFound(f"no group mapping {mapping_id!r} in this org", mapping_id=mapping_id)
    return rule


def delete_mapping(session: Session, actor: Actor, org_id: str, mapping_id: str) -> None:
    """Remove a rule; the matching groups' members keep only what the remaining rules give."""
    authorize(actor, "teams.manage", org_id=org_id)
    rule = _locked_rule(session, org_id, mapping_id)
    _authorize_owner_grant(actor, org_id, rule.org_role)
    _authorize_owners_groups(session, actor, org_id, [(rule.group_external_id, rule.group_display_name)], rule.id)
    matching = groups_matching(session, rule)
    record(session, actor, Action.GROUP_MAPPING_DELETED, Target("group_mapping", rule.id,
                                                           rule.group_display_name or rule.group_external_id or ""),
           {"team_id": rule.team_id, "team_role": rule.team_role, "org_role": rule.org_role}, org_id=org_id)
    for group in matching:
        group.mapping_id = None  # the database unpins them too (ON DELETE SET NULL); so must the session
    session.delete(rule)
    session.flush()
    for group in matching:
        groups.reapply(session, actor, group)


MAPPING_FIELDS = ("group_external_id", "group_display_name", "team_id", "team_role", "org_role")


def update_mapping(session: Session, actor: Actor, org_id: str, mapping_id: str,
                   changes: dict[str, str | None]) -> GroupMapping:
    """Edit a rule in place (its id stays) and re-apply it to the members of the groups it matched
    before and matches now; the same checks as create_mapping, on the old rule and the new."""
    authorize(actor, "teams.manage", org_id=org_id)
    unknown = sorted(set(changes) - set(MAPPING_FIELDS))
    if unknown:
        raise InvalidValue(f"not mapping fields: {', '.join(unknown)}", field=unknown[0])
    rule = _locked_rule(session, org_id, mapping_id)
    _authorize_owner_grant(actor, org_id, rule.org_role)
    _authorize_owner_grant(actor, org_id, changes.get("org_role"))
    wanted = {name: changes.get(name, getattr(rule, name)) or None for name in MAPPING_FIELDS}
    if not (wanted["group_external_id"] or wanted["group_display_name"]):
        raise InvalidValue("a rule names the group by its immutable id or its display name", field="group")
    if not (wanted["team_id"] or wanted["org_role"]):
        raise InvalidValue("a rule grants a team, an org role, or both", field="team_id")
    if wanted["team_id"]:
        lock_team(session, org_id, wanted["team_id"])
        wanted["team_role"] = parse_role(wanted["team_role"] or Role.MEMBER, allowed=teams.TEAM_ROLES)
    else:
        wanted["team_role"] = None
    wanted["org_role"] = parse_role(wanted["org_role"], allowed=ROLES) if wanted["org_role"] else None
    diff = {name: {"before": getattr(rule, name), "after": value} for name, value in wanted.items()
            if getattr(rule, name) != value}
    if not diff:
        return rule
    _authorize_owners_groups(session, actor, org_id, [(rule.group_external_id, rule.group_display_name),
                                                      (wanted["group_external_id"], wanted["group_display_name"])],
                             rule.id)
    matched = {group.id: group for group in groups_matching(session, rule)}
    for name, change in diff.items():
        setattr(rule, name, change["after"])
    if {"group_external_id", "group_display_name"} & set(diff):  # it names other groups now: they follow
        for group in matched.values():                              # what matches them, not the old pin
            group.mapping_id = None
    session.flush()
    record(session, actor, Action.GROUP_MAPPING_UPDATED, Target(
        "group_mapping", rule.id, rule.group_display_name or rule.group_external_id or ""), diff, org_id=org_id)
    matched |= {group.id: group for group in groups_matching(session, rule)}
    for group_id in sorted(matched):
        groups.reapply(session, actor, matched[group_id])
    return rule
