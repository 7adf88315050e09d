"""Members and their lifecycle (DESIGN.md sections 3.2 and 3.5): provision, deactivate,
reactivate, change role; the deletion is identity.member_removal's, a profile change and the IdP's
sync identity.user_profile's. Seats go through
identity.seats, keys through identity.key_revocation.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy import (
    Table,
    delete,
    insert,
    select,
    union_all,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached

from audit import Actor, clock, record
from identity import emails, key_revocation, owners, seats, sessions
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, SeatCapReached
from identity.grants import org_role as org_role
from identity.grants import record_taken, ungrouped_org_role
from identity.grants import team_roles as team_roles
from identity.lookups import DEFAULT_TEAM_ID, default_team_id, get_team, lock_live_user, user_target
from identity.lookups import default_team as default_team
from identity.lookups import find_by_user_name as find_by_user_name
from identity.lookups import find_by_user_name_or_removed as find_by_user_name_or_removed
from identity.lookups import get_user as get_user
from identity.member_removal import delete_user as delete_user
from identity.member_removal import deprovision as deprovision
from identity.member_removal import remove_user as remove_user
from identity.model_base import bound_columns
from identity.models import IdpGroup, RoleGrant, User
from identity.names import checked_email, checked_emails, checked_user_name
from identity.roles import RANK, SOURCES, authorize, parse_role
from identity.vocabulary import GrantSource, Role

# The names imported `as` themselves above are re-exported: the adapters ask `users` for a member,
# its roles and its removal (identity.lookups, identity.grants and identity.member_removal hold them).

# The org lock and the id of its Default team in one round trip (the subquery locks nothing).
LOCK_ORG_AND_DEFAULT_TEAM = seats.LOCK_ORG.add_columns(DEFAULT_TEAM_ID.scalar_subquery())


def provision_user(
    session: Session, actor: Actor, org_id: str, *, user_name: str, source: GrantSource | str,
    email: str | None = None, external_id: str | None = None, display_name: str | None = None,
    given_name: str | None = None, family_name: str | None = None, active: bool = True,
    role: str | None = None, team_id: str | None = None, attributes: dict[str, Any] | None = None,
) -> User:
    """Create a member: the user, its org role and team, and (when active) its seat.

    Long because the order is the point. The seat is taken before the user row is written, so
    that the row goes in once, seat flag set. The unique index decides whether the userName is
    free (no SELECT on the way), but a taken userName must still read as a Conflict when the seat
    cap refuses first, so the name is looked up on that rare branch only. The org lock reads the
    Default team's id too, in the same round trip.
    """
    if team_id is None:  # the lock first: it serialises the seat count
        org, default_team = seats.lock_org_reading(session, org_id, LOCK_ORG_AND_DEFAULT_TEAM)
    else:
        org, default_team = seats.lock_org(session, org_id), None
    role = parse_role(role or org.default_role)
    authorize(actor, "owners.manage" if role == Role.OWNER else "members.manage", org_id=org_id)
    if source not in SOURCES:
        raise InvalidValue(f"invalid source {source!r}", field="source")
    source = GrantSource(source)
    user_name = checked_user_name(user_name)
    email = checked_email(email)
    checked_emails(attributes)
    if team_id is not None:
        team_id = get_team(session, org_id, team_id).id
    else:  # an org without its Default team is broken data: default_team_id says so
        team_id = default_team or default_team_id(session, org_id)
    now = clock.now()
    user = User(
        id=str(uuid.uuid4()), org_id=org_id, user_name=user_name, email=email, external_id=external_id,
        display_name=display_name, given_name=given_name, family_name=family_name, active=active,
        has_seat=False, source=source, attributes=attributes or {}, created_at=now, updated_at=now,
        deleted_at=None, version=1,
    )
    record(session, actor, Action.USER_CREATED, user_target(user), {
        "user_name": user_name, "email": email, "external_id": external_id, "display_name": display_name,
        "given_name": given_name, "family_name": family_name, "active": active,
        "role": role, "team_id": team_id, "source": source,
    }, org_id=org_id)
    seat: list[seats.Write] = []  # the seat's rows, written with the member's
    if active:
        try:
            seats.take_seat(session, actor, user, writes=seat)
        except SeatCapReached:
            _ensure_free_user_name(session, org_id, user_name)
            raise
    _insert_member(session, user, [
        {"org_id": org_id, "user_id": user.id, "team_id": None, "role": role, "source": source,
         "source_ref": "", "created_at": now},
        {"org_id": org_id, "user_id": user.id, "team_id": team_id, "role": Role.MEMBER, "source": source,
         "source_ref": "", "created_at": now},
    ], seat)
    return user


# Plain INSERTs built once (not the ORM's unit of work: nothing reads these rows back). Both of a
# new member's grants go in one statement.
USERS = cast(Table, User.__table__)
GRANTS = cast(Table, RoleGrant.__table__)
INSERT_USER = insert(USERS)
INSERT_GRANTS = insert(GRANTS)
USER_NAME_INDEX = "uq_users_org_user_name"
# How each database names a clash on that index: PostgreSQL by the index, SQLite by its columns.
USER_NAME_CLASH = (USER_NAME_INDEX, "users.org_id, users.user_name_key")


# On PostgreSQL a new member's rows go in as one statement (a round trip, not five): the grants,
# with the user row, its email's row and its seat (the ledger row of a seat bought, the org's seat
# position) in data-modifying WITHs; the foreign keys are checked at the end of the statement, when
# the user row is there. Keyed by the number of email rows and the seat's writes (identity.seats.
# take_seat's, in its order). The grants come from a UNION, not a multi-row VALUES: SQLAlchemy
# compiles that anew for each call.
_GRANT_0, _GRANT_1 = bound_columns(GRANTS, "grant0_"), bound_columns(GRANTS, "grant1_")
_MEMBER = insert(GRANTS).from_select(list(_GRANT_0), union_all(select(*_GRANT_0.values()), select(
    *_GRANT_1.values()))).add_cte(insert(USERS).values(bound_columns(USERS, "user_")).cte("new_user"))
_EMAIL = insert(emails.EMAILS).values(bound_columns(emails.EMAILS, "email_")).cte("new_email")
_SEAT_WRITES: dict[tuple[Any, ...], list[Any]] = {
    (): [], (seats.SAVE_SEATS,): [seats.SAVE_SEATS.cte("seat")],
    (seats.INSERT_CHARGE, seats.SAVE_SEATS): [seats.INSERT_CHARGE.cte("seat_charge"), seats.SAVE_SEATS.cte("seat")]}
INSERT_MEMBER = {(email_rows, seat): _MEMBER.add_cte(*([_EMAIL] if email_rows else []), *ctes)
                 for email_rows in (0, 1) for seat, ctes in _SEAT_WRITES.items()}


def _taken(user_name: str) -> Conflict:
    return Conflict(f"userName {user_name!r} is already taken in this org", field="userName")


def _ensure_free_user_name(session: Session, org_id: str, user_name: str) -> None:
    if find_by_user_name(session, org_id, user_name) is not None:
        raise _taken(user_name)


def _insert_member(session: Session, user: User, grants: list[dict[str, Any]], seat: list[seats.Write]) -> None:
    """Write a new member's rows: its `seat`'s (identity.seats.take_seat's writes), the user, its
    emails' rows (identity.emails' rule: the flush listener sees ORM writes only), its two grants;
    a live user of the same userName (the unique index says so) is a Conflict.

    Provisioning holds the org lock, so a clash is with a member committed earlier, never a race.
    `user` then joins the session as the persistent object of its row (no flush, nothing pending),
    so later queries of this transaction find it.
    """
    row = {column.key: getattr(user, column.key) for column in USERS.columns}
    email_rows = emails.rows_for(user.org_id, user.id, user.attributes, user.email)
    shape = (len(email_rows), tuple(statement for statement, _ in seat))
    try:
        if shape in INSERT_MEMBER and session.get_bind().dialect.name == "postgresql":
            named = [("user_", row), *(("email_", email) for email in email_rows), ("grant0_", grants[0]),
                     ("grant1_", grants[1])]
            params = {prefix + key: value for prefix, values in named for key, value in values.items()}
            for _, values in seat:
                params.update(values)
            session.execute(INSERT_MEMBER[shape], params)
        else:
            for statement, values in seat:
                session.execute(statement, values)
            session.execute(INSERT_USER, row)
            if email_rows:
                session.execute(emails.INSERT_ROWS, email_rows)
            session.execute(INSERT_GRANTS, grants)
    except IntegrityError as error:
        if any(name in str(error.orig) for name in USER_NAME_CLASH):
            raise _taken(user.user_name) from error
        raise
    make_transient_to_detached(user)
    session.add(user)


def target_of(session: Session, actor: Actor, action: str, org_id: str, user_id: str) -> User:
    """Return the member `action` is aimed at, once the actor may do it to one of that member's role.

    The actor's own right is asked first, so that a refused actor learns nothing of the target.
    """
    authorize(actor, action, org_id=org_id)
    user = get_user(session, org_id, user_id)
    authorize(actor, action, org_id=org_id, target_role=org_role(session, user.id))
    return user


# A precondition on the member (SCIM's If-Match): it sees the member as the change about to be written
# will read it, under the lock that change takes, and refuses it by raising before anything is written.
Check = Callable[[User], None]


def _under_seat_lock(session: Session, org_id: str, user: User, check: Check | None = None) -> User:
    """Take the org's seat lock, then read the member again, its row locked (this transaction's own
    changes written first): a change that waited for the locks sees the member as the one before it
    left it, not as it was read before the wait (PostgreSQL's READ COMMITTED), so two deactivations
    (or reactivations, or deletions) at once move the seat count once, and `check` sees the version
    the change moves on from (a profile change under way, which holds the row and not the org, is
    waited for). NotFound once deleted."""
    seats.lock_org(session, org_id)  # first: it also serialises the last-owner check
    session.flush()
    fresh = lock_live_user(session, user.id)
    if check is not None:
        check(fresh)
    return fresh


def _locked_target(session: Session, actor: Actor, action: str, org_id: str, user_id: str,
                   check: Check | None) -> User:
    """The member `action` is aimed at, read again under the org's lock (`_under_seat_lock`), once the
    actor may do it to one of the role the member holds under that lock: a change that waited for the
    lock behind the target's promotion to owner is refused (an admin never acts on an owner), not
    written. The actor's own right is asked first, before anything is read (as in `target_of`)."""
    authorize(actor, action, org_id=org_id)
    user = _under_seat_lock(session, org_id, get_user(session, org_id, user_id), check)
    authorize(actor, action, org_id=org_id, target_role=org_role(session, user.id))
    return user


def deactivate_user(session: Session, actor: Actor, org_id: str, user_id: str, check: Check | None = None) -> User:
    """Suspend a member: sign-in refused, keys blocked, seat freed; it stays readable. `check` sees
    the member as read under the locks, before anything changes, and may refuse by raising."""
    user = _locked_target(session, actor, "member.deactivate", org_id, user_id, check)
    if not user.active:
        return user
    owners.ensure_not_last_owner(session, user)
    user.active = False
    touch(user)
    blocked = key_revocation.block_user_keys(session, user)
    sessions.end_user_sessions(session, user.id)
    seats.free_seat(session, actor, user)
    record(session, actor, Action.USER_DEACTIVATED, user_target(user),
           {"active": {"before": True, "after": False}, "keys_blocked": blocked}, org_id=org_id)
    return user


def reactivate_user(session: Session, actor: Actor, org_id: str, user_id: str, check: Check | None = None) -> User:
    """Restore a deactivated member: a seat again (charged if needed), deactivation's key blocks
    lifted. `check` as for `deactivate_user`."""
    user = _locked_target(session, actor, "member.reactivate", org_id, user_id, check)
    if user.active:
        return user
    seats.take_seat(session, actor, user)
    user.active = True
    touch(user)
    unblocked = key_revocation.unblock_user_keys(session, user)
    record(session, actor, Action.USER_REACTIVATED, user_target(user),
           {"active": {"before": False, "after": True}, "keys_unblocked": unblocked}, org_id=org_id)
    return user


def change_role(session: Session, actor: Actor, org_id: str, user_id: str, role: str) -> Role:
    """Give the member exactly `role` as its org role; return it.

    Every org-wide grant that no IdP group gave (manual, invitation, and the org's default role
    given at provisioning by SCIM or SAML) is replaced by one manual grant of `role`. When a group
    still grants more, the change is refused naming the group: a demotion that leaves the old
    role in force would be a lie told with a 200.
    """
    role = parse_role(role)
    authorize(actor, "member.change_role", org_id=org_id, target_role=Role.OWNER if role == Role.OWNER else None)
    # The org's lock serialises the last-owner check with other owner changes; the member is read again
    # under it, so that a deletion (or another change) that held it is seen: NotFound once deleted.
    user = _under_seat_lock(session, org_id, get_user(session, org_id, user_id))
    before = org_role(session, user.id)
    authorize(actor, "member.change_role", org_id=org_id, target_role=Role.OWNER if role == Role.OWNER else before)
    _ensure_no_group_grants_more(session, user, role)
    if role != Role.OWNER:  # no group grants more (checked above): the member is no owner after this
        owners.ensure_not_last_owner(session, user)
    manual_before = ungrouped_org_role(session, user.id)
    record_taken(session, session.scalars(delete(RoleGrant).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id.is_(None), RoleGrant.source_ref == "").returning(RoleGrant.id)))
    session.add(RoleGrant(org_id=org_id, user_id=user.id, team_id=None, role=role, source=GrantSource.MANUAL,
                          created_at=clock.now()))
    session.flush()
    if before == Role.OWNER and role != Role.OWNER:
        sessions.end_break_glass_sessions(session, user.id)
    if role != before or manual_before != role:
        if role != before:
            touch(user)
        record(session, actor, Action.MEMBER_ROLE_CHANGED, user_target(user),
               {"role": {"before": before, "after": role}, "manual_role": {"before": manual_before, "after": role},
                "source": GrantSource.MANUAL, "replaced": "every_grant_but_groups"}, org_id=org_id)
    return role


def _ensure_no_group_grants_more(session: Session, user: User, role: Role) -> None:
    """Refuse a role below what one of the member's IdP groups grants, naming the group."""
    by_groups = session.execute(select(RoleGrant.role, RoleGrant.source_ref).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id.is_(None), RoleGrant.source_ref != ""))
    above = [(granted, ref) for granted, ref in by_groups if RANK[granted] > RANK[role]]
    if above:
        granted, ref = max(above, key=lambda row: RANK[row[0]])
        group = session.get(IdpGroup, ref)
        name = group.display_name if group is not None else ref
        raise Conflict(f"the IdP group {name!r} grants {user.user_name} the role {granted}; change the group's "
                       f"members or its mapping in the identity provider first", field="role", group=name,
                       group_id=ref, granted_role=granted)


def touch(user: User) -> None:
    """A member's row changed: its time and version (its ETag) move."""
    user.updated_at = clock.now()
    user.version += 1
