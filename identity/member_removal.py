"""A member's removal for good (DESIGN.md sections 3.2 and 3.5): deleted by an admin or at the
IdP's request, and every member at an org's deletion. Keys revoked, sessions ended, grants and
group memberships removed, the seat freed, the user row kept as a tombstone so that audit history
and past usage keep their subject.

Locks, in identity.group_locks' order: the org's, the member's groups in id order, then its row.
`identity.users` re-exports `delete_user`, `remove_user` and `deprovision`: the adapters ask it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import (
    String,
    Table,
    all_,
    bindparam,
    delete,
    event,
    exists,
    func,
    literal,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.attributes import set_committed_value

from audit import Actor, clock, record
from identity import group_locks, group_versions, key_revocation, owners, seats, sessions
from identity.actions import Action
from identity.errors import LastOwner, NotFound
from identity.grants import ORG_ROLE_RANK, org_role, record_taken, role_of_rank
from identity.lookups import LOCK_LIVE_USER, user_target
from identity.models import IdpGroup, IdpGroupMember, RoleGrant, User
from identity.roles import authorize
from identity.vocabulary import KeyStatusReason, Role

USERS = cast(Table, User.__table__)
GRANTS = cast(Table, RoleGrant.__table__)


def delete_user(session: Session, actor: Actor, org_id: str, user_id: str) -> User:
    """Remove a member for good: grants and group memberships gone, keys revoked, seat freed.

    The user row stays as a tombstone, so that audit history and past usage keep their subject.
    """
    authorize(actor, "member.delete", org_id=org_id)
    user, role = _locked_member(session, org_id, user_id)
    return _delete(session, actor, user, role)


def _delete(session: Session, actor: Actor, user: User, role: Role | None) -> User:
    """delete_user once the org is locked and the user's org `role` read: authorize, check, remove."""
    authorize(actor, "member.delete", org_id=user.org_id, target_role=role)
    owners.ensure_not_last_owner(session, user, role)
    return deprovision(session, actor, user, role)


# The member under the org's lock and its org role, in one round trip; NotFound once deleted.
MEMBER_WITH_ROLE = select(User, ORG_ROLE_RANK).where(
    User.id == bindparam("user_id"), User.org_id == bindparam("org_id"), User.deleted_at.is_(None),
).execution_options(populate_existing=True)


# On PostgreSQL the same read takes the deletion's locks, in the order of identity.group_locks: the
# member's groups in id order (the CTE, which the WHERE reads before the row is locked: LockRows is the
# plan's top), then the member's row (FOR NO KEY UPDATE: an add to a group, which share-locks the users
# it adds, waits for the deletion and then reads the member deleted; foreign keys still go through). The
# groups are those of the statement's snapshot: a member an add joined to another group while this
# waited for its row is found by REMOVE_ROWS (`held_elsewhere`), which then changes nothing, and its
# locks are taken again in order (`_lock_again`).
_GROUPS_OF_MEMBER = (select(IdpGroup.id).where(IdpGroup.id.in_(select(IdpGroupMember.group_id).where(
    IdpGroupMember.user_id == bindparam("user_id")))).order_by(IdpGroup.id).with_for_update(key_share=True)
    .cte("member_groups"))
_GROUP_IDS = select(func.array_agg(_GROUPS_OF_MEMBER.c.id)).scalar_subquery()
LOCK_MEMBER_WITH_ROLE = MEMBER_WITH_ROLE.add_columns(_GROUP_IDS).where(
    func.coalesce(func.cardinality(_GROUP_IDS), 0) >= 0,  # the groups locked first, whatever the plan
).with_for_update(of=User, key_share=True)


# The savepoint before the member's groups and row are locked (PostgreSQL): a membership found after
# them in a group below one held (`_remove_rows`) is not waited for while the row is held; they are let
# go, and the groups locked again in id order before the row. Kept until the transaction ends (no
# RELEASE: one statement). session.info[_MEMBER_LOCKS]: the member's id, the groups held before the
# savepoint and those locked since; forgotten when the removal is written or the transaction ends.
# session.info[_MEMBER_CHECK]: `remove_user`'s `check`, run again on the member's row locked again.
_BEFORE_MEMBER_LOCKS = "SAVEPOINT member_locks"  # sent as they are, on the connection (no ORM execution)
_LET_GO_OF_MEMBER_LOCKS = "ROLLBACK TO SAVEPOINT member_locks"
_MEMBER_LOCKS = "identity.member_locks"
_MEMBER_CHECK = "identity.member_check"


@event.listens_for(Session, "after_transaction_end")
def _forget_member_locks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: its savepoints are gone
        session.info.pop(_MEMBER_LOCKS, None)
        session.info.pop(_MEMBER_CHECK, None)


def _locked_member(session: Session, org_id: str, user_id: str) -> tuple[User, Role | None]:
    """Take the org's seat lock, then read the member and its org role (as identity.users'
    `_under_seat_lock` does: a deletion that waited for the lock sees the member as the one before
    it left it); on PostgreSQL lock its groups, then its row (LOCK_MEMBER_WITH_ROLE), for
    `deprovision`."""
    seats.lock_org(session, org_id)  # first: it also serialises the last-owner check
    session.flush()
    params = {"user_id": user_id, "org_id": org_id}
    if session.get_bind().dialect.name == "postgresql":
        held = group_locks.locked_groups(session)
        session.connection().exec_driver_sql(_BEFORE_MEMBER_LOCKS)  # `_remove_rows` may let go of the locks taken next
        row = session.execute(LOCK_MEMBER_WITH_ROLE, params).one_or_none()
        if row is not None:
            session.info[_MEMBER_LOCKS] = (user_id, held, frozenset(row[2] or ()))
            group_locks.record_locked(session, row[2] or ())
    else:  # SQLite runs one write transaction at a time and needs no lock
        row = session.execute(MEMBER_WITH_ROLE, params).one_or_none()
    if row is None:
        raise NotFound(f"no user {user_id!r} in this org", user_id=user_id)
    return row[0], role_of_rank(row[1])


def deprovision(session: Session, actor: Actor, user: User, role: Role | None = None) -> User:
    """Remove `user` for good (as delete_user does), for a caller that has authorized the actor,
    locked the org and decided about the last owner: delete_user, and the deletion of a whole org.

    `role` is the user's org role if the caller has read it. Plain statements, built once: the
    member's rows and its own, written once (`_remove_rows`), then the seat.

    Locks (identity.group_locks: the org, then groups in id order, then rows): the caller holds the
    org's lock and either the member's groups and then its row (`_locked_member`), or every group of
    the org (the org's deletion), so that no add to a group is under way for the member: its group
    memberships all go, and the versions of the groups it left move without waiting for a group.
    """
    org_id = user.org_id
    before_role = role if role is not None else org_role(session, user.id)
    now = clock.now()
    removed = {"active": False, "has_seat": False, "deleted_at": now, "updated_at": now, "version": user.version + 1}
    revoked, groups_left = _remove_rows(session, user, removed)
    group_versions.member_changed(session, groups_left)
    seats.release_seat(session, actor, user)  # by the seat the object still shows
    for field, value in removed.items():  # the object as its row now is, with no change for a flush to write
        set_committed_value(user, field, value)
    record(session, actor, Action.USER_DELETED, user_target(user),
           {"role": {"before": before_role, "after": None}, "keys_revoked": revoked}, org_id=org_id)
    return user


MEMBERSHIPS = cast(Table, IdpGroupMember.__table__)
REMOVED = ("active", "has_seat", "deleted_at", "updated_at", "version")
REMOVE_USER = update(USERS).where(USERS.c.id == bindparam("member_id")).values(
    {field: bindparam(f"new_{field}", type_=USERS.c[field].type) for field in REMOVED})
UNGRANT = delete(GRANTS).where(GRANTS.c.user_id == bindparam("member_id")).returning(GRANTS.c.id)
LEAVE_GROUPS = delete(MEMBERSHIPS).where(MEMBERSHIPS.c.user_id == bindparam("member_id")).returning(
    MEMBERSHIPS.c.group_id)
# On PostgreSQL a removed member's rows change in one statement (a round trip, not five): keys
# revoked, sessions ended, grants and group memberships removed, the user's row written, each in a
# data-modifying WITH (PostgreSQL runs each once, to completion, read or not), answering ("key",
# id, prefix) for each key revoked, ("group", id, NULL) for each group left and ("grant", id, NULL)
# for each grant taken (identity.grants.record_taken).
# Each removal is guarded: a membership in a group this transaction does not hold locked (an add
# that committed while the deletion waited for the member's row) is answered ("held_elsewhere", group
# id, NULL) and nothing changes; `_remove_rows` locks that group in id order with the member's
# (`_lock_again`: the member's row let go first) and runs the statement again.
_HELD = bindparam("held_groups", type_=ARRAY(MEMBERSHIPS.c.group_id.type))
_ELSEWHERE = (MEMBERSHIPS.c.user_id == bindparam("member_id"), MEMBERSHIPS.c.group_id != all_(_HELD))
_NONE_ELSEWHERE = ~exists().where(*_ELSEWHERE)
_REVOKED = key_revocation.REVOKE_USER_KEYS.where(_NONE_ELSEWHERE).cte("revoked")
_LEFT = LEAVE_GROUPS.where(_NONE_ELSEWHERE).cte("groups_left")
_UNGRANTED = UNGRANT.where(_NONE_ELSEWHERE).cte("ungranted")
REMOVE_ROWS = union_all(
    select(literal("key"), _REVOKED.c.id, _REVOKED.c.prefix),
    select(literal("group"), _LEFT.c.group_id, null()),
    select(literal("grant"), _UNGRANTED.c.id.cast(String), null()),
    select(literal("held_elsewhere"), MEMBERSHIPS.c.group_id, null()).where(*_ELSEWHERE),
).add_cte(sessions.END_USER_SESSIONS.where(_NONE_ELSEWHERE).cte("ended"),
          _UNGRANTED, REMOVE_USER.where(_NONE_ELSEWHERE).cte("removed"))


def _remove_rows(session: Session, user: User, removed: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Revoke the member's keys, end its sessions, remove its grants and group memberships, write
    its row's `removed` values; return the prefixes of the keys revoked and the groups left.

    Plain statements: the session's ApiKey objects are told of their revocation (identity.key_revocation.
    revoked), the caller tells `user`; no caller holds a grant, group membership or session object
    of the member.
    """
    reason = KeyStatusReason.MEMBER_DELETED
    params = {"member_id": user.id, **{f"new_{field}": removed[field] for field in REMOVED}}
    if session.get_bind().dialect.name == "postgresql":
        while True:  # once, but when an add joined the member to a group after its groups were locked
            rows = session.execute(REMOVE_ROWS, {**params, "reason": reason,
                                                 "held_groups": sorted(group_locks.locked_groups(session))}).all()
            elsewhere = [row[1] for row in rows if row[0] == "held_elsewhere"]
            if not elsewhere:
                break
            params = _lock_again(session, user, removed, elsewhere) or params
        session.info.pop(_MEMBER_LOCKS, None)
        sessions.sessions_ended(session, user.id)
        record_taken(session, (int(row[1]) for row in rows if row[0] == "grant"))
        return (key_revocation.revoked(session, [(row[1], row[2]) for row in rows if row[0] == "key"], reason),
                [row[1] for row in rows if row[0] == "group"])
    revoked = key_revocation.revoke_user_keys(session, user, reason=reason)
    session.execute(sessions.END_USER_SESSIONS, {"member_id": user.id})
    sessions.sessions_ended(session, user.id)
    record_taken(session, session.scalars(UNGRANT, {"member_id": user.id}))
    left = list(session.scalars(LEAVE_GROUPS, {"member_id": user.id}))
    # Its groups recorded held, as LOCK_MEMBER_WITH_ROLE records them on PostgreSQL: SQLite's one write
    # transaction at a time holds them as surely.
    group_locks.record_locked(session, left)
    session.execute(REMOVE_USER, params)
    return revoked, left


def _lock_again(session: Session, user: User, removed: dict[str, Any], elsewhere: list[str]) -> dict[str, Any] | None:
    """Lock the groups `elsewhere` (an add joined the member to them while the deletion waited for its
    row) in identity.group_locks' order. After `_locked_member`: its savepoint rolled back to (the
    member's groups and row let go, nothing written since), its groups and these locked in id order,
    then the member's row, read again (a profile change may have moved its version) and checked again
    (`remove_user`'s `check`: a stale If-Match refuses now), and the owners counted again (LastOwner,
    nothing written: the owner grants were let go with the savepoint); return the removal's parameters anew.
    Otherwise (the org's deletion holds every group of the org first) the groups are locked as they come."""
    taken = session.info.get(_MEMBER_LOCKS)
    if taken is None or taken[0] != user.id:
        group_locks.lock_groups(session, elsewhere)
        return None
    _, held_before, member_groups = taken
    session.connection().exec_driver_sql(_LET_GO_OF_MEMBER_LOCKS)
    group_locks.forget_locked(session, held_before)
    group_locks.lock_groups(session, [*member_groups, *elsewhere])
    session.info[_MEMBER_LOCKS] = (user.id, held_before, group_locks.locked_groups(session) - held_before)
    fresh = session.execute(LOCK_LIVE_USER, {"user_id": user.id}).scalar_one()  # under the org's lock: not deleted
    check: Callable[[User], None] | None = session.info.get(_MEMBER_CHECK)
    if check is not None:
        check(fresh)
    # The owner grants the last-owner check locked were let go with the savepoint: a removal from a
    # group queued for them may have taken another owner away since. Locked and counted again.
    owners.ensure_not_last_owner(session, fresh)
    removed["version"] = fresh.version + 1
    return {"member_id": user.id, **{f"new_{field}": removed[field] for field in REMOVED}}


def remove_user(session: Session, actor: Actor, org_id: str, user_id: str, *,
                check: Callable[[User], None] | None = None) -> User:
    """Delete a member at the IdP's request (SCIM DELETE); the last active owner is kept, audited.

    `check` sees the member as read under the org's lock before anything changes, and may refuse
    (SCIM's If-Match).
    """
    user, role = _locked_member(session, org_id, user_id)  # the role read once: the checks and the audit event
    if check is not None:
        check(user)
        session.info[_MEMBER_CHECK] = check  # run again should the member's row be let go and locked again
    if owners.would_remove_last_owner(session, user, role):
        owners.protect_last_owner(session, actor, user, "delete")
        return user
    # _delete but its last-owner check, made just above under the same locks (a second would lock
    # the org's owner grants and count the owners again)
    authorize(actor, "member.delete", org_id=org_id, target_role=role)
    try:
        return deprovision(session, actor, user, role)
    except LastOwner:  # counted again once its locks were taken again (`_lock_again`): nothing written
        owners.protect_last_owner(session, actor, user, "delete")
        return user
    finally:
        session.info.pop(_MEMBER_CHECK, None)
