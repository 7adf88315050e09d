"""A SAML assertion's group claims (DESIGN.md section 3.3): a member's groups made exactly those it names.

Apart from identity.groups and identity.group_membership, which it calls: what a sign-in does
with the groups it carries, read by whoever follows a SAML sign-in, not by whoever follows a SCIM
group change.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from audit import Actor
from identity.group_locks import lock_group
from identity.group_membership import add_members, chunks, lock_live, remove_members
from identity.groups import create_group
from identity.models import IdpGroup, IdpGroupMember
from identity.names import name_key
from identity.vocabulary import GrantSource


def apply_user_groups(session: Session, actor: Actor, org_id: str, user_id: str, groups: list[str]) -> None:
    """Make a user's groups exactly those a SAML assertion names (by immutable id or by name).

    Groups the org has not seen are created so that mapping and mirroring apply to them. The
    named groups are found in one query per 500, and a sign-in whose groups did not change reads
    that and the user's memberships, nothing more.
    """
    refs = list(dict.fromkeys(g.strip() for g in groups if g and g.strip()))
    known = _groups_named(session, org_id, refs)
    wanted: set[str] = set()
    made: dict[str, IdpGroup] = {}  # by name key: a claim naming a new group twice ('Sales', 'SALES') makes it once
    for ref in refs:
        group = known.get(ref) or made.get(name_key(ref))
        if group is None:
            group = create_group(session, actor, org_id, display_name=ref, external_id=ref, from_claim=True)
            made[name_key(ref)] = group
        wanted.add(group.id)
    current = set(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == user_id)))
    for group_id in sorted(wanted ^ current):  # in one order, before any is changed (group_locks)
        lock_group(session, org_id, group_id)
    for group_id in sorted(wanted - current):
        add_members(session, actor, org_id, group_id, [user_id], source=GrantSource.SAML)
    if current - wanted and not wanted - current:
        # The member's row before a removal takes the org's owner grants (identity.group_locks): an
        # owner's deactivation holds the row and then takes them, and the sign-in's session locks the
        # row after. An add share-locked it already.
        lock_live(session, org_id, [user_id])
    for group_id in sorted(current - wanted):
        remove_members(session, actor, org_id, group_id, [user_id])


def _groups_named(session: Session, org_id: str, refs: list[str]) -> dict[str, IdpGroup]:
    """Return {ref: group} for the refs naming a group of the org: its immutable id first, else its name
    (by its key, identity.names.name_key: `Équipe` is `équipe` on every database)."""
    by_external: dict[str, IdpGroup] = {}
    by_name: dict[str, IdpGroup] = {}
    for chunk in chunks(refs):
        for group in session.scalars(select(IdpGroup).where(IdpGroup.org_id == org_id, or_(
                IdpGroup.external_id.in_(chunk), IdpGroup.display_name_key.in_([name_key(r) for r in chunk])))):
            if group.external_id is not None:
                by_external[group.external_id] = group
            by_name[group.display_name_key] = group
    found = {ref: by_external.get(ref) or by_name.get(name_key(ref)) for ref in refs}
    return {ref: group for ref, group in found.items() if group is not None}
