"""One IdP group's changes serialised (DESIGN.md section 3.3): a lock on the group's row.

Changes of one group are serialised by a lock on its row, taken before its members are read:
two IdP workers PATCHing the same group at once then each see the other's committed members,
so that adding a member already there, or removing one already gone, is a no-op rather than a
unique-key conflict (409) or a second audit event. FOR NO KEY UPDATE: the foreign keys of
other rows pointing at the group (members added to it) still go through. Locks on several
groups are taken in id order (identity.group_claims.apply_user_groups, identity.group_sync),
after the org's lock and before the audit chain head's (audit.log), so that parallel writers
never deadlock: a change that may give a group a new name or id (which takes the org's lock) locks
the org before the group (identity.groups.update_group, `lock_for_change` for a SCIM PATCH).
SQLite runs one write transaction at a time and needs no lock.

The org's owner grants (its RoleGrant rows of role owner and no team, a handful, FOR UPDATE in id
order) come after the groups and after the user rows (below) that a change holds or will take: a
removal from a group takes them, when an owner whose role that group gives is among those leaving,
before it counts the owners left (identity.owners.last_owners_leaving_group), so that two removals
from groups, neither holding the org's lock, cannot both take away an owner; an owner's own
deactivation, demotion or deletion takes them too, after the org's lock and the member's row, before
it counts (identity.owners.would_remove_last_owner), so that it and a removal from a group cannot
both take one away either. A removal from a group waits after them for no group (it holds the one it
changes, and a sign-in locks all its groups first) and for no user row: a change that removes
members and adds others (a SCIM PUT or PATCH, identity.groups.change_group, group_membership.
replace_members: lock_live; a sign-in, which adds first) share-locks the rows of those it adds
before its removals, so that it waits for an owner's demotion, deactivation or deletion under way,
which holds the owner's row and then takes the owner grants, before it takes them.

User rows come after groups. An add to a group share-locks the rows of the users it adds (not of its
members already there, unless a PATCH that also removes names them: they are locked before it knows
who is left) after the group's lock (identity.group_membership.add_members); a rule's re-application
share-locks the rows of all the group's members (in id order, in chunks) before it deletes the
group's grants (identity.groups.reapply, group_membership.lock_members): a member's grants come
after its row, as a change of one member's team grants (teams._member_of) locks the row and then
deletes them; a member's deletion locks the member's groups in id order and then its row
(identity.member_removal.LOCK_MEMBER_WITH_ROLE), and the org's deletion every group of the org
before any member's row (`lock_org_groups`). So an add waits for a deletion under way and reads the
member deleted, and a deletion waits for an add under way, then removes the membership it made; a
removal from a group takes no user row, so a deletion waiting for that group's lock is never waited
for by it. Each transaction that locks a user's row exclusively and then waits for another lock
(deletion, deactivation, a new name shown in its groups) holds the org's lock first, so at most one
at a time per org; a profile change without a new name locks the row last
(identity.lookups.LOCK_LIVE_USER) and waits for nothing after it but the audit chain's head. An add
that committed while the deletion waited for the member's row (found by
identity.member_removal.REMOVE_ROWS, which then changes nothing) is no exception: the deletion lets
go of the member's groups and row, and of the owner grants its last-owner check took (rolled back to
the savepoint before it took them), and locks its groups and that add's in id order, then the row
again, rather than wait for that group while holding them; then the owner grants again, and counts
the owners anew (a removal from a group may have taken one away meanwhile).

A team's row comes after the org's lock and before user rows. A change that writes a row naming the
team, or the team itself, share-locks it first (FOR KEY SHARE, identity.lookups.lock_team: a
membership added, changed or removed, a rename, a rule into it, an invitation to it), after the
org's lock where it takes that one (a rule, an invitation) and never waits for the org's lock after
it; a membership's change then locks the member's row (identity.lookups.LOCK_LIVE_USER). An add to
a group that adopts the org's team of the group's name as its mirror share-locks that team after the
group's lock (identity.group_membership.mirror_team), as the grants any add inserts into a team wait
for its deletion there (their foreign key's check): a deletion under way is waited for, and the add
then makes a new team rather than point at the deleted one. The team's
deletion (identity.team_deletion) takes the org's lock, then the groups that give the team's members
(its rules', its mirror's, its grants' sources) in id order, then its wallet, then the team's row FOR
UPDATE, before it reads anything it ends: so every change of the team either commits first and is
ended with it, or waits and finds the team gone. The groups and the wallet come before the team's
row because their holders may wait for it: an IdP's change of a group inserts grants into the team
(their foreign key's check waits for FOR UPDATE), and a debit locks the team's wallet and then the
team's row (identity.wallet_locks). A share lock on a team waits for nothing but its deletion, so
holding one never deadlocks with another change of the team.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from identity.errors import NotFound
from identity.models import IdpGroup
from identity.transaction_sets import TransactionSet

# The ids of the groups this session's transaction holds locked: locked once, read afterwards.
_LOCKED: TransactionSet[str] = TransactionSet("identity.locked_groups")
_LOCK_GROUP = (select(IdpGroup).where(IdpGroup.id == bindparam("group_id")).with_for_update(key_share=True)
               .execution_options(populate_existing=True))


def lock_group(session: Session, org_id: str, group_id: str) -> IdpGroup:
    """Return the org's group, locked against other changes of it until the transaction ends, or raise NotFound."""
    if _LOCKED.holds(session, group_id):
        group = session.get(IdpGroup, group_id)
    else:
        group = session.scalars(_LOCK_GROUP, {"group_id": group_id}).one_or_none()
    if group is None or group.org_id != org_id:
        raise NotFound(f"no group {group_id!r} in this org", group_id=group_id)
    _LOCKED.add(session, (group_id,))
    return group


_LOCK_GROUPS = (select(IdpGroup.id).where(IdpGroup.id.in_(bindparam("group_ids", expanding=True)))
                .order_by(IdpGroup.id).with_for_update(key_share=True))


def locked_groups(session: Session) -> frozenset[str]:
    """The ids of the groups this session's transaction holds locked (lock_group, lock_groups)."""
    return _LOCKED.of(session)


def record_locked(session: Session, group_ids: Iterable[str]) -> None:
    """Record that this transaction holds these groups locked (a statement of its own locked them)."""
    _LOCKED.add(session, group_ids)


def forget_locked(session: Session, kept: Iterable[str]) -> None:
    """Record that this transaction holds only `kept` of the groups it held (a savepoint rolled back)."""
    _LOCKED.retain(session, kept)


def lock_groups(session: Session, group_ids: Iterable[str]) -> None:
    """Lock the groups of these ids that this transaction does not hold yet, in id order (a member's
    groups, found by the member: no org check). A group deleted meanwhile is skipped."""
    new = sorted(set(group_ids) - _LOCKED.of(session))
    for start in range(0, len(new), 500):  # ids per IN (...) list, as identity.group_membership.chunks; in id order
        session.execute(_LOCK_GROUPS, {"group_ids": new[start:start + 500]})
    _LOCKED.add(session, new)


_LOCK_ORG_GROUPS = (select(IdpGroup.id).where(IdpGroup.org_id == bindparam("org_id")).order_by(IdpGroup.id)
                    .with_for_update(key_share=True))


def lock_org_groups(session: Session, org_id: str) -> None:
    """Lock every group of the org, in id order (the org's deletion: every member's groups at once,
    before any member's row)."""
    _LOCKED.add(session, session.scalars(_LOCK_ORG_GROUPS, {"org_id": org_id}))
