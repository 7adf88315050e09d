"""The last-owner guard (DESIGN.md section 3.2): an org always keeps at least one active owner.

Removing, demoting, deactivating or deprovisioning the last active owner is refused (a person's
request: LastOwner) or skipped and audited (an IdP's change, which must not be retried forever).
Callers hold the org lock (identity.seats.lock_org) so that two such changes cannot race past it;
a removal from a group, which need not, locks the org's owner grants instead (`last_owners_leaving_group`).

Also the owners' team grants against a re-derivation of group grants (`owners_team_roles`,
`refuse_owner_team_loss`): an actor who may not take an owner out of a team by hand may not
through a rule or the `group_sync` setting either.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from audit import Actor, record
from audit.log import Target
from identity.actions import Action
from identity.errors import LastOwner
from identity.grants import org_role
from identity.lookups import user_target
from identity.models import RoleGrant, User
from identity.roles import RANK, authorize, refusal
from identity.vocabulary import Role

OwnerTeamRoles = dict[tuple[str, str], Role]  # (owner's user id, team id) -> the highest team role

REASON = "the org must keep at least one active owner"


def active_owners(session: Session, org_id: str, *, without: Collection[str] = (),
                  without_group: str | None = None) -> int:
    """Count the org's active owners once some owner grants are gone.

    `without`: users whose owner grants are taken away, all of them, or with `without_group`
    only those that group gave.
    """
    taken = RoleGrant.user_id.in_(without) if without_group is None else \
        (RoleGrant.user_id.in_(without) & (RoleGrant.source_ref == without_group))
    stmt = select(func.count(func.distinct(RoleGrant.user_id))).join(User, User.id == RoleGrant.user_id).where(
        RoleGrant.org_id == org_id, RoleGrant.team_id.is_(None), RoleGrant.role == Role.OWNER,
        User.active.is_(True), User.deleted_at.is_(None))
    if without:
        stmt = stmt.where(~taken)
    return session.scalar(stmt) or 0


LOCK_OWNER_GRANTS = (select(RoleGrant.id).where(
    RoleGrant.org_id == bindparam("org_id"), RoleGrant.role == Role.OWNER, RoleGrant.team_id.is_(None))
    .order_by(RoleGrant.id).with_for_update())


def would_remove_last_owner(session: Session, user: User, role: Role | None = None) -> bool:
    """Tell whether deactivating, deleting or demoting `user` would leave the org with no active owner.

    `role` is the user's org role when the caller has just read it (it is read otherwise).
    """
    role = role if role is not None else org_role(session, user.id)
    if not (user.active and role == Role.OWNER):
        return False
    # The org's owner grants locked before the count (identity.group_locks: after the groups and the
    # member's row), as a removal from a group locks them: a removal from a group, which need not hold
    # the org's lock, and this change then queue, and the second counts what the first left.
    session.execute(LOCK_OWNER_GRANTS, {"org_id": user.org_id})
    return not active_owners(session, user.org_id, without=[user.id])


def ensure_not_last_owner(session: Session, user: User, role: Role | None = None) -> None:
    """Raise LastOwner when taking `user`'s owner role or active state would leave no active owner."""
    if would_remove_last_owner(session, user, role):
        raise LastOwner(REASON, user_id=user.id, org_id=user.org_id)


def ensure_an_owner_remains(session: Session, org_id: str) -> None:
    """Refuse a change after which the org has no active owner: the grants of a group re-derived
    (a mapping edited or deleted, or its team deleted), which can take the owner role they gave."""
    if not active_owners(session, org_id):
        raise LastOwner(REASON, org_id=org_id)


def last_owners_leaving_group(session: Session, org_id: str, group_id: str, leaving: set[str]) -> set[str]:
    """Return the users among `leaving` to keep in the group: one whose owner role comes from the
    group, when their leaving together would leave the org without an active owner."""
    if not leaving:
        return set()
    # The org's owner grants (a handful, by ix_role_grants_org_role), then this group's among them:
    # by `source_ref` the database would read every grant the group gave.
    owner_through_group = {uid for uid, ref in session.execute(select(RoleGrant.user_id, RoleGrant.source_ref).where(
        RoleGrant.org_id == org_id, RoleGrant.role == Role.OWNER, RoleGrant.team_id.is_(None))) if ref == group_id}
    losing = owner_through_group & leaving
    if not losing:
        return set()
    # An owner leaves: the org's owner grants locked (FOR UPDATE, in id order) before the count, so
    # that two removals from groups, which need not hold the org's lock (a members-only PATCH, a
    # group's deletion, a sign-in), queue here and the second counts what the first left
    # (identity.group_locks: after the groups). READ COMMITTED: the count then sees the first's commit.
    session.execute(LOCK_OWNER_GRANTS, {"org_id": org_id})
    if active_owners(session, org_id, without=losing, without_group=group_id):
        return set()
    return {sorted(losing)[0]}


def protect_last_owner(session: Session, actor: Actor, user: User, change: str) -> None:
    """Record that an IdP's change to the last active owner was skipped (it is not retried forever)."""
    record(session, actor, Action.MEMBER_LAST_OWNER_PROTECTED, user_target(user),
           {"skipped": change, "reason": REASON}, org_id=user.org_id, outcome="refused")


def protect_group_owner(session: Session, actor: Actor, org_id: str, user_id: str, group_id: str) -> None:
    """Record that an IdP's removal of the last active owner from a group was skipped."""
    record(session, actor, Action.MEMBER_LAST_OWNER_PROTECTED, Target("user", user_id, user_id),
           {"group_id": group_id, "reason": "removal would leave the org without an active owner"},
           org_id=org_id, outcome="refused")


def owners_team_roles(session: Session, actor: Actor, org_id: str) -> OwnerTeamRoles | None:
    """Return the team roles of the org's owners before a re-derivation of group grants that `actor`
    set off, for `refuse_owner_team_loss`; None when the actor may take an owner out of a team
    (nothing to guard, nothing read). One query: an org's owners and their teams are a handful."""
    if refusal(actor, "member.remove_from_team", org_id=org_id, target_role=Role.OWNER) is None:
        return None
    return _team_roles(session, org_id, select(RoleGrant.user_id).where(
        RoleGrant.org_id == org_id, RoleGrant.team_id.is_(None), RoleGrant.role == Role.OWNER))


def refuse_owner_team_loss(session: Session, actor: Actor, org_id: str, before: OwnerTeamRoles | None) -> None:
    """Refuse (PermissionDenied; the whole change rolls back) a re-derivation that took an owner out
    of a team or lowered their role in it, unless `actor` may do that to an owner by hand
    (teams.remove_team_member, change_team_role; team_deletion refuses a team with an owner alike).
    `before`: owners_team_roles, read before the change."""
    if not before:
        return
    after = _team_roles(session, org_id, sorted({user_id for user_id, _ in before}))
    if any(place not in after for place in before):
        authorize(actor, "member.remove_from_team", org_id=org_id, target_role=Role.OWNER)
    if any(RANK[after[place]] < RANK[role] for place, role in before.items() if place in after):
        authorize(actor, "member.change_team_role", org_id=org_id, target_role=Role.OWNER)


def _team_roles(session: Session, org_id: str, users: Collection[str] | Select[Any]) -> OwnerTeamRoles:
    """Return the highest team role of each of `users` (ids, or a query of them) in each of their teams."""
    roles: OwnerTeamRoles = {}
    for user_id, team_id, role in session.execute(select(RoleGrant.user_id, RoleGrant.team_id, RoleGrant.role).where(
            RoleGrant.org_id == org_id, RoleGrant.team_id.is_not(None), RoleGrant.user_id.in_(users))):
        held = roles.get((user_id, team_id or ""))
        if held is None or RANK[role] > RANK[held]:
            roles[(user_id, team_id or "")] = role
    return roles
