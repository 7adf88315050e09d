"""A group's version, its ETag (RFC 7644 section 3.14): moved once per transaction however many of
its parts change, and for every group a member was in when they are deleted or renamed (their
members, shown by name, are part of them).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from audit import clock
from identity.models import IdpGroup
from identity.transaction_sets import TransactionSet

# The groups whose version moved in this transaction: moved once however many of their parts change.
_TOUCHED: TransactionSet[str] = TransactionSet("identity.groups_touched")


def touch(session: Session, group: IdpGroup) -> None:
    """Give the group a new version (its ETag) and time, once per transaction however many of its
    parts change (its name, its members added and removed by one PATCH)."""
    if _TOUCHED.holds(session, group.id):
        return
    _TOUCHED.add(session, (group.id,))
    group.updated_at = clock.now()
    group.version += 1


# The groups a deleted or renamed member is in, locked in id order (as apply_user_groups locks them; the
# caller holds the org's lock, taken before any group's) and given their new version in one statement.
_TOUCH_LEFT = update(IdpGroup).where(IdpGroup.id.in_(
    select(IdpGroup.id).where(IdpGroup.id.in_(bindparam("group_ids", expanding=True)))
    .order_by(IdpGroup.id).with_for_update(key_share=True).scalar_subquery()))


def member_changed(session: Session, group_ids: Iterable[str]) -> None:
    """Give the groups a member left (deleted) or is shown anew in (renamed) a new version (their
    members are part of them, so a stale If-Match is 412 and a stale If-None-Match 200), once per
    transaction as `touch` does."""
    new = sorted(set(group_ids) - _TOUCHED.of(session))
    for start in range(0, len(new), 500):  # ids per IN (...) list, as identity.group_membership.chunks
        session.execute(_TOUCH_LEFT.values(version=IdpGroup.version + 1, updated_at=clock.now()),
                        {"group_ids": new[start:start + 500]}, execution_options={"synchronize_session": "fetch"})
    _TOUCHED.add(session, new)


def created(session: Session, group: IdpGroup) -> None:
    """Record that the group was made in this transaction: its version 1 is this transaction's, the
    members it is made with included (no `touch` moves it again)."""
    _TOUCHED.add(session, (group.id,))
