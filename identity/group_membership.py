"""An IdP group's members (DESIGN.md section 3.3): who joins and leaves it, and what its membership gives.

A group's members get the grants its mapping rule names (team and team role, org role), or in
`mirror` mode a team of the group's name (`grants_of`); each grant remembers the group
(`source_ref`), so that leaving the group takes away exactly what it gave. Membership changes
touch only the rows they change: adding 1,000 members to a group of 100,000 reads and writes
those 1,000. The group itself (made, renamed, deleted, its rule re-applied) is identity.groups'.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from identity import owners, teams
from identity.actions import Action
from identity.errors import InvalidValue, NotFound
from identity.grants import record_taken
from identity.group_defaults import defaults_of, settle_defaults
from identity.group_locks import lock_group
from identity.group_rules import pin_rule
from identity.group_versions import touch
from identity.lookups import group_target, lock_team
from identity.models import IdpGroup, IdpGroupMember, Org, RoleGrant, Team, User
from identity.roles import authorize
from identity.vocabulary import GrantSource, Role

CHUNK = 500  # ids per IN (...) list: well under every database's parameter limit


@dataclass(frozen=True)
class Grants:
    """What membership of one group gives."""

    team_id: str | None
    team_role: Role | None
    org_role: Role | None


def chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def grants_of(session: Session, actor: Actor, group: IdpGroup) -> Grants:
    """Return what the group's members get, creating its mirror team when the org mirrors groups."""
    org = session.get(Org, group.org_id)
    assert org is not None
    rule = pin_rule(session, group)
    if rule is not None:
        org_role = org_role_granted(rule.org_role, idp_may_grant_owner=org.idp_may_grant_owner)
        return Grants(rule.team_id, rule.team_role or (Role.MEMBER if rule.team_id else None), org_role)
    if org.group_sync != "mirror":
        return Grants(None, None, None)
    return Grants(mirror_team(session, actor, group), Role.MEMBER, None)


def org_role_granted(rule_role: Role | str | None, *, idp_may_grant_owner: bool) -> Role | None:
    """The org role a rule naming `rule_role` gives now: the IdP may grant owner only where the org
    turned that on (`idp_may_grant_owner`), admin otherwise. The console's rule list says this too."""
    role = Role(rule_role) if rule_role else None
    return Role.ADMIN if role == Role.OWNER and not idp_may_grant_owner else role


def mirror_team(session: Session, actor: Actor, group: IdpGroup) -> str:
    """Return the id of the team a group no rule governs becomes under `mirror`: its own, else the
    org's team of its name, else a new one, the IdP's (no creator member: `actor` only set off the
    change, as an admin switching `group_sync` does), audited as `team.created` by `actor`."""
    if group.team_id is None:
        existing = session.scalars(select(Team.id).where(
            Team.org_id == group.org_id, Team.name_key == group.display_name_key)).first()
        made = _adopted(session, group, existing) if existing is not None else None
        made = made or teams.create_team(session, actor, group.org_id, group.display_name, creator=False)
        group.team_id = made.id
    return group.team_id


def _adopted(session: Session, group: IdpGroup, team_id: str) -> Team | None:
    """The org's team of the group's name, share-locked (identity.lookups.lock_team), or None when it
    is gone or renamed once its deletion or rename under way committed: the group then makes a new
    team rather than point at a deleted one (a foreign key's error, a 500). After the group's lock, as
    every grant an add to the group inserts into a team (identity.group_locks)."""
    try:
        team = lock_team(session, group.org_id, team_id)
    except NotFound:
        return None
    return team if team.name_key == group.display_name_key else None


def _live_users(session: Session, org_id: str, user_ids: list[str]) -> set[str]:
    """The org's live users among `user_ids`, their rows share-locked until the transaction ends
    (FOR SHARE): a member's deletion, which locks the member's row after its groups
    (identity.member_removal.LOCK_MEMBER_WITH_ROLE), cannot remove them meanwhile; one under way is waited
    for, and its member then read deleted (a locking read sees the newest row)."""
    found: set[str] = set()
    for chunk in chunks(sorted(user_ids)):  # in id order, as every path that locks several users' rows
        # By primary key alone, then checked here: with `org_id` in the WHERE, SQLite without
        # statistics picks an org index and scans the whole org for every chunk.
        rows = session.execute(select(User.id, User.org_id, User.deleted_at).where(User.id.in_(chunk))
                               .order_by(User.id).with_for_update(read=True, of=User))
        found.update(uid for uid, org, deleted in rows if org == org_id and deleted is None)
    return found


def _members_among(session: Session, group_id: str, user_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for chunk in chunks(user_ids):
        found.update(session.scalars(select(IdpGroupMember.user_id).where(
            IdpGroupMember.group_id == group_id, IdpGroupMember.user_id.in_(chunk))))
    return found


def add_members(session: Session, actor: Actor, org_id: str, group_id: str, user_ids: list[str], *,
                source: GrantSource = GrantSource.SCIM, left_group_team: Collection[str] = (),
                live: Collection[str] | None = None) -> list[str]:
    """Add users to a group and give them its grants; return those who were not members yet.

    `source` is the channel the membership came through, which each grant remembers (DESIGN 3.2):
    `scim` for SCIM Groups, `saml` for an assertion's group claims (apply_user_groups).
    `left_group_team`: those whose team grant from this group `reapply` has just taken.
    `live`: the users among `user_ids` that the caller found live with their rows share-locked
    (`lock_live`), all of `user_ids` asked: then not read again.

    Locks (identity.group_locks): the group's, then the rows of the users it adds (FOR SHARE, in
    `_live_users`), never those of its members already there: a deletion of one of them, which holds
    its row, waits for this group's lock, and so for this change, before it takes the row.
    """
    authorize(actor, "teams.manage", org_id=org_id)
    group = lock_group(session, org_id, group_id)
    wanted = list(dict.fromkeys(user_ids))
    present = _members_among(session, group.id, wanted)  # live: a deleted user is in no group
    new = [uid for uid in wanted if uid not in present]
    unknown = set(new) - (set(live) if live is not None else _live_users(session, org_id, new))
    if unknown:
        raise InvalidValue(f"no such users in this org: {', '.join(sorted(unknown)[:10])}", field="members",
                           unknown=sorted(unknown))
    if not new:
        return []
    grants = grants_of(session, actor, group)
    now = clock.now()
    session.execute(insert(IdpGroupMember), [{"group_id": group.id, "user_id": uid} for uid in new])
    rows = []
    if grants.team_id:
        rows += [{"org_id": org_id, "user_id": uid, "team_id": grants.team_id, "role": grants.team_role,
                  "source": source, "source_ref": group.id, "created_at": now} for uid in new]
    if grants.org_role:
        rows += [{"org_id": org_id, "user_id": uid, "team_id": None, "role": grants.org_role,
                  "source": source, "source_ref": group.id, "created_at": now} for uid in new]
    if rows:
        session.execute(insert(RoleGrant), rows)
    defaults = defaults_of(session, org_id)
    # A group's grant replaces the provisioned default; the Default team comes back only where reapply took a team.
    revoked = settle_defaults(session, org_id, new, defaults, left_group_team=left_group_team)
    touch(session, group)  # its members are part of it: a new version (ETag), so a stale If-Match is 412
    record(session, actor, Action.GROUP_MEMBERS_ADDED, group_target(group),
           {"members": new, "team_id": grants.team_id, "team_role": grants.team_role, "org_role": grants.org_role,
            "source": source, "defaults": defaults, "keys_revoked": revoked}, org_id=org_id)
    return new


def remove_members(session: Session, actor: Actor, org_id: str, group_id: str, user_ids: list[str]) -> list[str]:
    """Take users out of a group and take back exactly its grants; absent users are no error.

    A removal that would take away the org's last active owner is skipped and audited, so that
    the IdP's change still succeeds and is not retried forever.
    """
    authorize(actor, "teams.manage", org_id=org_id)
    group = lock_group(session, org_id, group_id)
    present = _members_among(session, group.id, list(dict.fromkeys(user_ids)))
    protected = owners.last_owners_leaving_group(session, org_id, group.id, present)
    gone: list[str] = []
    left_team: set[str] = set()  # those whose team grant from this group went: the Default team may come back
    for chunk in chunks(sorted(present - protected)):
        # RETURNING: the rows this transaction took out, the ones it audits. Under the group's lock
        # none is gone since it was read: a member's deletion locks the member's groups before it
        # takes its memberships (identity.member_removal; one in a group it does not hold, it waits for).
        taken = list(session.scalars(delete(IdpGroupMember).where(
            IdpGroupMember.group_id == group.id, IdpGroupMember.user_id.in_(chunk)).returning(IdpGroupMember.user_id)))
        # Found by user alone, then checked here: with `source_ref` in the WHERE, SQLite without
        # statistics walks the group's index, every grant of a 100,000-member group, per chunk.
        grants = [row for row in session.execute(select(
            RoleGrant.id, RoleGrant.source_ref, RoleGrant.user_id, RoleGrant.team_id).where(
            RoleGrant.user_id.in_(taken))) if row.source_ref == group.id] if taken else []
        if grants:
            session.execute(delete(RoleGrant).where(RoleGrant.id.in_([row.id for row in grants])))
            record_taken(session, (row.id for row in grants))
        left_team.update(row.user_id for row in grants if row.team_id is not None)
        gone += sorted(taken)
    if gone:
        defaults = defaults_of(session, org_id)
        revoked = settle_defaults(session, org_id, gone, defaults, left_group_team=left_team)
        touch(session, group)
        record(session, actor, Action.GROUP_MEMBERS_REMOVED, group_target(group),
               {"members": gone, "defaults": defaults, "keys_revoked": revoked}, org_id=org_id)
    for user_id in sorted(protected):
        owners.protect_group_owner(session, actor, org_id, user_id, group.id)
    return gone


def member_ids(session: Session, group_id: str) -> list[str]:
    """Return every member's id (for a full replace or a full read)."""
    return list(session.scalars(select(IdpGroupMember.user_id).where(IdpGroupMember.group_id == group_id)))


def lock_live(session: Session, org_id: str, user_ids: list[str]) -> set[str]:
    """The org's live users among `user_ids`, their rows share-locked (FOR SHARE, in id order): for a
    change that removes members and then adds these (`add_members(live=...)`), before the removals.
    A removal of an owner takes the org's owner grants (identity.owners.last_owners_leaving_group);
    a demotion or deletion of an owner holds its row and then takes them: the rows come first in
    identity.group_locks' order, as a sign-in's adds come before its removals."""
    return _live_users(session, org_id, user_ids)


def lock_members(session: Session, org_id: str, group_id: str) -> tuple[list[str], set[str]]:
    """Return every member's id and the live ones among them (for `add_members(live=...)`), their
    rows share-locked (FOR SHARE, in id order, a statement per CHUNK): for a change of the group that
    takes its grants away from all of them at once (identity.groups.reapply), in identity.group_locks'
    order, a member's row before its grants. The group's lock is held: a member's deletion, which
    locks the group first, is not under way."""
    members = member_ids(session, group_id)
    return members, _live_users(session, org_id, members)


def replace_members(session: Session, actor: Actor, org_id: str, group_id: str, user_ids: list[str]) -> None:
    """Make the group's members exactly `user_ids` (SCIM PUT, or a PATCH replace of members)."""
    lock_group(session, org_id, group_id)
    wanted = list(dict.fromkeys(user_ids))
    current = set(member_ids(session, group_id))
    joining = [uid for uid in wanted if uid not in current]
    live = lock_live(session, org_id, joining)  # the rows of those joining before the removals (lock_live)
    remove_members(session, actor, org_id, group_id, sorted(current - set(wanted)))
    add_members(session, actor, org_id, group_id, joining, live=live)
