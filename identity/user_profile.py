"""A member's profile (DESIGN.md 3.5): its fields changed by an admin or the IdP, and a SCIM PUT or
PATCH made to match (`sync_user`: the profile, then the active state through identity.users).

A change reads the member, checks it may be made, then locks the member's row and reads it again
before it writes (identity.lookups.LOCK_LIVE_USER), so that a change that waited for another (or for the member's
deletion) writes and audits against the row as it is; a new name shown in the member's groups takes
the org's lock first (identity.group_locks' order).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor, record
from identity import group_versions, owners, seats, users
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, LastOwner
from identity.grants import org_role
from identity.lookups import find_by_user_name, get_user, lock_live_user, user_target
from identity.models import IdpGroupMember, User
from identity.names import checked_email, checked_emails, checked_user_name
from identity.roles import authorize
from identity.users import Check

PROFILE_FIELDS = ("user_name", "email", "external_id", "display_name", "given_name", "family_name", "attributes")


def update_profile(session: Session, actor: Actor, org_id: str, user_id: str, changes: dict[str, Any],
                   check: Check | None = None) -> User:
    """Change a member's profile fields (not its role, state or seat); audit what changed.

    An owner's email and userName decide where their sign-in links go: only owners change them.
    `check` sees the member as read under its row's lock before the change is written (as read,
    when nothing changes), and may refuse by raising.
    """
    user, diff = _profile_change(session, actor, org_id, user_id, changes)
    if diff:
        _write_profile(session, actor, user, diff, check)
    elif check is not None:
        check(user)
    return user


def _profile_change(session: Session, actor: Actor, org_id: str, user_id: str,
                    changes: dict[str, Any]) -> tuple[User, dict[str, dict[str, Any]]]:
    """The member a profile change is aimed at, once the actor may make it, and what it changes."""
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise InvalidValue(f"not profile fields: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    user = users.target_of(session, actor, "member.update_profile", org_id, user_id)
    if "user_name" in changes:
        name = checked_user_name(changes["user_name"])
        clash = find_by_user_name(session, org_id, name)
        if clash is not None and clash.id != user.id:
            raise Conflict(f"userName {name!r} is already taken in this org", field="userName")
        changes = {**changes, "user_name": name}
    if "email" in changes:
        changes = {**changes, "email": checked_email(changes["email"])}
    if "attributes" in changes:
        checked_emails(changes["attributes"])
    diff = {field: {"before": getattr(user, field), "after": value}
            for field, value in changes.items() if getattr(user, field) != value}
    return user, diff


def _write_profile(session: Session, actor: Actor, user: User, diff: dict[str, dict[str, Any]],
                   check: Check | None) -> None:
    """Write and audit a profile change (`_profile_change`'s), the member's row locked first."""
    after = {field: change["after"] for field, change in diff.items()}
    if (after.get("display_name", user.display_name) or after.get("user_name", user.user_name)) != _shown(user):
        _groups_show_anew(session, user)
    _lock_live(session, user)
    # Asked again with the role the member holds under its row's lock: a change that waited there for
    # the member's promotion to owner would otherwise let an admin set where an owner's links go.
    authorize(actor, "member.update_profile", org_id=user.org_id, target_role=org_role(session, user.id))
    if check is not None:  # the row read under the lock: no statement of its own
        check(user)
    # What each field held when the change wrote it: the row as read under the lock (another change
    # may have committed while this one waited for it), not as read before.
    diff = {field: {"before": getattr(user, field), "after": change["after"]}
            for field, change in diff.items() if getattr(user, field) != change["after"]}
    if not diff:
        return
    for field, change in diff.items():
        setattr(user, field, change["after"])
    users.touch(user)
    logged: dict[str, Any] = dict(diff)
    if "attributes" in diff:  # the other attributes: name which keys changed, not their whole bodies
        before, after = diff["attributes"]["before"] or {}, diff["attributes"]["after"] or {}
        logged["attributes"] = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    record(session, actor, Action.USER_UPDATED, user_target(user), logged, org_id=user.org_id)


def _lock_live(session: Session, user: User) -> None:
    """Lock `user`'s row for the change about to be written and read it again (`user` refreshed,
    identity.lookups.lock_live_user): NotFound once deleted. Read before the lock (the caller's read,
    maybe before a deletion or another change committed), its liveness, version and values would let
    the change write a tombstone or a version already written, or audit a value as replaced that
    another change had replaced already. Last in identity.group_locks' order (after the org and the
    member's groups when a new name is shown); nothing is waited for after it but the audit chain's
    head at commit, so it needs the org's lock only for a new name."""
    lock_live_user(session, user.id)


def _shown(user: User) -> str:
    """How a group's members list shows `user` (scim.listing's `display`): the display name, else the userName."""
    return user.display_name or user.user_name


def _groups_show_anew(session: Session, user: User) -> None:
    """Move the versions of the groups `user` is in: their members show the user's name, so a new
    name is a new version of each (RFC 7644 3.14: a stale If-None-Match must not get 304). The org's
    lock first, before the user's row is written, in the order member deletion and SAML claims lock."""
    seats.lock_org(session, user.org_id)
    group_versions.member_changed(session, session.scalars(
        select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user.id)))


def sync_user(session: Session, actor: Actor, org_id: str, user_id: str, fields: dict[str, Any],
              check: Check | None = None) -> User:
    """Make a member match what the IdP sent (SCIM PUT/PATCH): profile, then active state.

    Deactivating the org's last active owner is skipped and audited instead of failing the request.
    `check` sees the member once, before anything is written, under the lock of the first write to
    its row (the profile's, else the deactivation's or reactivation's; as read when neither is).
    """
    user = get_user(session, org_id, user_id)
    active = fields.get("active", user.active)
    if bool(active) != user.active:  # the org's lock before the user's row is written (group_locks' order)
        seats.lock_org(session, org_id)
    user, diff = _profile_change(session, actor, org_id, user_id,
                                 {k: v for k, v in fields.items() if k in PROFILE_FIELDS})
    if diff:
        _write_profile(session, actor, user, diff, check)
        check = None
    if active and not user.active:
        users.reactivate_user(session, actor, org_id, user_id, check)
    elif not active and user.active:
        # One count of the owners, the deactivation's own: after the org's lock and the member's row, as
        # identity.group_locks orders them (a count first held the owner grants while it waited for the
        # row, which a PATCH adding the member holds as it waits for them: a deadlock). Refused before
        # anything is written; the IdP's change is then skipped and audited.
        try:
            users.deactivate_user(session, actor, org_id, user_id, check)
        except LastOwner:
            owners.protect_last_owner(session, actor, user, "deactivate")
    elif check is not None:
        check(user)
    return user
