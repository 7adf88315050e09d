"""One IdP group's changes serialised (DESIGN.md section 3.3): a lock on the group's row.

Changes of one group are serialised by a lock on its row, taken before its members are read:
two IdP workers PATCHing the same group at once then each see the other's committed members,
so that adding a member already there, or removing one already gone, is a no-op rather than a
unique-key conflict (409) or a second audit event. FOR NO KEY UPDATE: the foreign keys of
other rows pointing at the group (members added to it) still go through. Locks on several
groups are taken in id order (identity.group_claims.apply_user_groups, identity.group_sync),
after the org's lock and before the audit chain head's (audit.log), so that parallel writers
never deadlock. SQLite runs one write transaction at a time and needs no lock.
"""

from __future__ import annotations

from sqlalchemy import bindparam, event, select
from sqlalchemy.orm import Session, SessionTransaction

from identity.errors import NotFound
from identity.models import IdpGroup

# The ids of the groups this session's transaction holds locked: locked once, read afterwards.
LOCKED_GROUPS = "identity.locked_groups"
_LOCK_GROUP = (select(IdpGroup).where(IdpGroup.id == bindparam("group_id")).with_for_update(key_share=True)
               .execution_options(populate_existing=True))


def lock_group(session: Session, org_id: str, group_id: str) -> IdpGroup:
    """Return the org's group, locked against other changes of it until the transaction ends, or raise NotFound."""
    locked: set[str] = session.info.setdefault(LOCKED_GROUPS, set())
    if group_id in locked:
        group = session.get(IdpGroup, group_id)
    else:
        group = session.scalars(_LOCK_GROUP, {"group_id": group_id}).one_or_none()
    if group is None or group.org_id != org_id:
        raise NotFound(f"no group {group_id!r} in this org", group_id=group_id)
    locked.add(group_id)
    return group


@event.listens_for(Session, "after_transaction_end")
def _forget_group_locks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: its locks are released
        session.info.pop(LOCKED_GROUPS, None)
