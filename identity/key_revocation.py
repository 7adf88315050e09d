"""The keys a change to their holder or their team blocks or revokes (DESIGN.md 3.5, 3.7), set-based:
a member deactivated (blocked, and unblocked on reactivation), deleted, gone from a team; a team
deleted. One key revoked by a person is identity.keys' `revoke_api_key`; keys are made, verified
and rotated there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, Table, bindparam, exists, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audit import clock
from identity.models import ApiKey, RoleGrant, User
from identity.transaction_sets import TransactionSet
from identity.vocabulary import KeyStatus, KeyStatusReason

# The ids of the keys this session's transaction revoked, blocked or rotated (ended, or ending at the
# rotation's grace): identity.sessions.confirm_role lets a key's own write go on after it ended that key
# itself, and no other. Every change that ends a key tells `ended`; forgotten when the transaction ends.
_ENDED_KEYS: TransactionSet[str] = TransactionSet("identity.ended_keys")


def grace_ended(expires_at: dt.datetime | None) -> bool:
    """Tell whether a key's end has come: a rotated key's old secret works until its grace's end
    (`expires_at`, exclusive; None: no end). One rule for the sign-in of a key, the gateway's check,
    the key list's state and confirm_role's check at a write's end. A time read as a Core row may come
    without its zone on some drivers: it is UTC, as every stored time."""
    if expires_at is None:
        return False
    return (expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=dt.UTC)) <= clock.now()


def ended(session: Session, key_ids: Iterable[str]) -> None:
    """Record that this transaction ends the keys of these ids (revoked, blocked, rotated)."""
    _ENDED_KEYS.add(session, key_ids)


def ended_keys(session: Session) -> frozenset[str]:
    """The ids of the keys this transaction ended (`ended`)."""
    return _ENDED_KEYS.of(session)


def _set_status(session: Session, user: User, where_status: KeyStatus, where_reason: KeyStatusReason | None,
                status: KeyStatus, reason: KeyStatusReason | None) -> list[str]:
    """Move the user's keys from one status to another in one statement; return their prefixes."""
    conditions = [ApiKey.user_id == user.id, ApiKey.status == where_status]
    if where_reason is not None:
        conditions.append(ApiKey.status_reason == where_reason)
    return _move(session, conditions, status, reason)


def _move(session: Session, conditions: list[ColumnElement[bool]], status: KeyStatus,
          reason: KeyStatusReason | None) -> list[str]:
    """Give the keys that meet `conditions` a status and its reason; return their prefixes. A key
    moved to any status but active is recorded ended (`ended`)."""
    rows = session.execute(select(ApiKey.id, ApiKey.prefix).where(*conditions)).all()
    if rows:
        session.execute(update(ApiKey).where(*conditions).values(status=status, status_reason=reason),
                        execution_options={"synchronize_session": "fetch"})
        if status != KeyStatus.ACTIVE:
            ended(session, (row.id for row in rows))
    return [row.prefix for row in rows]


def block_user_keys(session: Session, user: User) -> list[str]:
    """Block the user's active keys because of deactivation; reactivation lifts exactly these."""
    return _set_status(session, user, KeyStatus.ACTIVE, None, KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION)


def unblock_user_keys(session: Session, user: User) -> list[str]:
    """Unblock the keys that deactivation blocked; keys revoked for any other reason stay revoked."""
    return _set_status(session, user, KeyStatus.BLOCKED, KeyStatusReason.DEACTIVATION, KeyStatus.ACTIVE, None)


KEYS = cast(Table, ApiKey.__table__)
# Every key of a member that is not revoked yet (active or blocked), revoked: one plain statement,
# built once, that answers what it revoked (also run inside a member's removal: identity.member_removal).
REVOKE_USER_KEYS = update(KEYS).where(
    KEYS.c.user_id == bindparam("member_id"), KEYS.c.status.in_([KeyStatus.ACTIVE, KeyStatus.BLOCKED]),
).values(status=KeyStatus.REVOKED, status_reason=bindparam("reason", type_=KEYS.c.status_reason.type)).returning(
    KEYS.c.id, KEYS.c.prefix)


def revoke_user_keys(session: Session, user: User, *, reason: KeyStatusReason) -> list[str]:
    """Revoke every key of the user that is not revoked yet (active or blocked), in one statement."""
    return revoked(session, session.execute(REVOKE_USER_KEYS, {"member_id": user.id, "reason": reason}), reason)


def revoked(session: Session, rows: Iterable[Sequence[Any]], reason: KeyStatusReason) -> list[str]:
    """The prefixes of the keys REVOKE_USER_KEYS answered (`rows`: id, prefix), each key the
    session holds told of its new status (a plain UPDATE tells none), as the ORM's would, and each
    recorded ended (`ended`)."""
    prefixes = []
    for key_id, prefix in rows:
        ended(session, (key_id,))
        held = session.identity_map.get(session.identity_key(ApiKey, key_id))
        if held is not None:
            set_committed_value(held, "status", KeyStatus.REVOKED)
            set_committed_value(held, "status_reason", reason)
        prefixes.append(prefix)
    return sorted(prefixes)


def revoke_keys_of_teams_left(session: Session, users: list[str] | Select[Any], *,
                              team_id: str | None = None) -> list[str]:
    """Revoke (`left_team`) the keys `users` (ids, or a query of them) hold for a team in which they
    hold no grant any more, or for `team_id` only; return their prefixes, sorted.

    The one place for a member's keys when they leave a team, whichever way: removed by hand
    (identity.teams.remove_team_member) or by an IdP group change (identity.group_defaults.
    settle_defaults, where every change of group grants ends: a group left, deleted or re-derived,
    the Default team giving way to a group's team). Blocked keys too: revoked is for good, and
    reactivation lifts only what deactivation blocked (DESIGN 3.5, 3.7). Set-based: per 500 users,
    one SELECT and, when it finds keys, one UPDATE.
    """
    batches = [users[start:start + 500] for start in range(0, len(users), 500)] if isinstance(users, list) else [users]
    revoked: list[str] = []
    for batch in batches:
        conditions = of_teams_left(batch)
        if team_id is not None:
            conditions.append(ApiKey.team_id == team_id)
        revoked += _move(session, conditions, KeyStatus.REVOKED, KeyStatusReason.LEFT_TEAM)
    return sorted(revoked)


def of_teams_left(users: list[str] | Select[Any]) -> list[ColumnElement[bool]]:
    """The keys, not revoked yet, that `users` hold for a team in which they hold no grant: what
    revoke_keys_of_teams_left revokes (and identity.key_settling lists before it does)."""
    left = ~exists().where(RoleGrant.user_id == ApiKey.user_id, RoleGrant.team_id == ApiKey.team_id)
    return [ApiKey.user_id.in_(users), ApiKey.status.in_([KeyStatus.ACTIVE, KeyStatus.BLOCKED]),
            ApiKey.team_id.is_not(None), left]


def revoke_keys_of_team(session: Session, org_id: str, team_id: str) -> list[str]:
    """Revoke every key of a team that is being deleted, whoever holds it."""
    return _move(session, [ApiKey.org_id == org_id, ApiKey.team_id == team_id, ApiKey.status != KeyStatus.REVOKED],
                 KeyStatus.REVOKED, KeyStatusReason.TEAM_DELETED)
