"""Teams (DESIGN.md section 3.1): created, renamed, joined and left. Ids never change.

Deleting a team reaches into group mappings and invitations, which build on this module: it
lives above them, in identity.team_deletion.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import key_revocation
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, ValueTooLong
from identity.grants import org_role
from identity.lookups import acting_user_id, find_by_address, get_team, get_user, lock_live_user, lock_team
from identity.model_base import fits, max_length
from identity.models import ApiKey, IdpGroup, RoleGrant, Team, User
from identity.names import name_key
from identity.roles import RANK, authorize, parse_role
from identity.vocabulary import GrantSource, KeyStatus, Role

TEAM_ROLES = (Role.VIEWER, Role.MEMBER, Role.ADMIN)


def slugify(name: str, *, max_length: int = 40) -> str:
    """Return a lowercase ASCII slug of `name` ('Data Science!' -> 'data-science')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:max_length].strip("-") or "team"


def _clean_name(name: str) -> str:
    """Return `name` with its runs of whitespace made one space, or refuse it: empty (InvalidValue),
    longer than the column (ValueTooLong: a mirrored group's name may be, groups keep 255)."""
    name = " ".join((name or "").split())
    if not name:
        raise InvalidValue("a team name must have 1 to 200 characters", field="name")
    if not fits(name, Team.name):
        raise ValueTooLong(f"a team name must have 1 to {max_length(Team.name)} characters: "
                           f"this one has {len(name)}", field="name")
    return name


def _ensure_free_name(session: Session, org_id: str, name: str, keep: str | None = None) -> None:
    """Refuse a name another team of the org has, compared by its key (identity.names.name_key:
    `ÉQUIPE` is `équipe`, `STRASSE` is `Straße`, on every database), as uq_teams_org_name does."""
    clash = session.scalars(select(Team).where(Team.org_id == org_id, Team.name_key == name_key(name))).first()
    if clash is not None and clash.id != keep:
        raise Conflict(f"a team named {name!r} already exists", field="name")


def create_team(session: Session, actor: Actor, org_id: str, name: str, *, is_default: bool = False,
                creator: bool = True) -> Team:
    """Create a team whose id is the slug of its name and a short random suffix.

    A person who creates a team (signed in, or through their API key) becomes its admin, by a
    manual team grant; a team made by the IdP (a mirrored group, `creator=False`: whoever's change
    made the group a team, an admin switching `group_sync` too) or an operator has no creator member.
    """
    authorize(actor, "teams.manage", org_id=org_id)
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name)
    team = Team(id=f"{slugify(name)}-{secrets.token_hex(4)}", org_id=org_id, name=name, created_at=clock.now(),
                is_default=is_default)
    session.add(team)
    session.flush()
    record(session, actor, Action.TEAM_CREATED, Target("team", team.id, name), {"name": name}, org_id=org_id)
    maker = acting_user_id(session, actor) if creator else None
    if maker is not None:
        _set_manual_grant(session, actor, org_id, team, get_user(session, org_id, maker), Role.ADMIN)
    return team


def rename_team(session: Session, actor: Actor, org_id: str, team_id: str, name: str) -> Team:
    """Rename a team; its id stays."""
    authorize(actor, "teams.manage", org_id=org_id)
    team = lock_team(session, org_id, team_id)  # a deletion under way first: the team is gone, not a 500
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name, keep=team.id)
    if name != team.name:
        record(session, actor, Action.TEAM_RENAMED, Target("team", team.id, name),
               {"name": {"before": team.name, "after": name}}, org_id=org_id)
        team.name = name
    return team


def _member_of(session: Session, actor: Actor, action: str, org_id: str, team_id: str,
               user_id: str, *, change: bool = True) -> tuple[Team, User]:
    """Return the team and the member `action` aims at, once the actor may do it to one of that member's role.

    For a `change`, the team's row is share-locked and then the member's row locked, each read again
    (identity.group_locks' order): a change of one member's memberships waits for another under way
    (two adds at once make one grant; a role change after a removal finds no membership), for the
    team's deletion (the team is gone) and for the member's (the member is gone), and never writes
    a grant to a deleted team or member.
    """
    authorize(actor, action, org_id=org_id)
    team = lock_team(session, org_id, team_id) if change else get_team(session, org_id, team_id)
    user = get_user(session, org_id, user_id)
    if change:
        user = lock_live_user(session, user.id)
    authorize(actor, action, org_id=org_id, target_role=org_role(session, user.id))
    return team, user


def add_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str,
                    role: str = Role.MEMBER) -> None:
    """Add a member to a team with a team role (manual grant), or change that grant's role."""
    role = parse_role(role, allowed=TEAM_ROLES)
    team, user = _member_of(session, actor, "member.add_to_team", org_id, team_id, user_id)
    _set_manual_grant(session, actor, org_id, team, user, role)


def add_team_member_by_address(session: Session, actor: Actor, org_id: str, team_id: str, address: str,
                               role: str = Role.MEMBER) -> User:
    """Add the live member whose userName or email is `address` to a team (as `add_team_member`):
    how a person names a member among thousands, where a list of them all would not do."""
    user = find_by_address(session, org_id, address) if address.strip() else None
    if user is None:
        raise NotFound(f"no member {address.strip()!r} in this org: type their email or userName",
                       field="member", address=address.strip())
    add_team_member(session, actor, org_id, team_id, user.id, role)
    return user


def change_team_role(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str, role: str) -> Role:
    """Set a team member's manual team role; return the role it holds in the team now.

    NotFound when the user is not in the team (add them first). As with org roles, a role below
    what one of the member's IdP groups grants in this team is refused, naming the group.
    """
    role = parse_role(role, allowed=TEAM_ROLES)
    team, user = _member_of(session, actor, "member.change_team_role", org_id, team_id, user_id)
    grants = list(session.execute(select(RoleGrant.role, RoleGrant.source_ref).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id == team.id)))
    if not grants:
        raise NotFound(f"{user.user_name} is not a member of team {team.id}", team_id=team.id, user_id=user.id)
    above = [(granted, ref) for granted, ref in grants if ref and RANK[granted] > RANK[role]]
    if above:
        granted, ref = max(above, key=lambda row: RANK[row[0]])
        group = session.get(IdpGroup, ref)
        raise Conflict(f"the IdP group {group.display_name if group else ref!r} grants {user.user_name} the team "
                       f"role {granted}; change the group in the identity provider first", field="role",
                       group_id=ref, granted_role=granted)
    _set_manual_grant(session, actor, org_id, team, user, role)
    return role


def _set_manual_grant(session: Session, actor: Actor, org_id: str, team: Team, user: User, role: Role) -> None:
    grant = session.scalars(select(RoleGrant).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id == team.id, RoleGrant.source == GrantSource.MANUAL,
    )).one_or_none()
    before = grant.role if grant else None
    if grant is None:
        session.add(RoleGrant(org_id=org_id, user_id=user.id, team_id=team.id, role=role, source=GrantSource.MANUAL,
                              created_at=clock.now()))
        session.flush()
    elif grant.role == role:
        return
    else:
        grant.role = role
    record(session, actor, Action.TEAM_MEMBER_ADDED if before is None else Action.TEAM_MEMBER_ROLE_CHANGED,
           Target("user", user.id, user.user_name),
           {"team_id": team.id, "team_role": {"before": before, "after": role}}, org_id=org_id)


def removal_preview(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str) -> list[str]:
    """Return the prefixes of the keys that removing the member from the team would revoke. Reads only.

    Asked with the removal's own permission, so that the preview tells nobody more than the removal would.
    """
    team, user = _member_of(session, actor, "member.remove_from_team", org_id, team_id, user_id, change=False)
    if session.scalar(select(RoleGrant.id).where(RoleGrant.user_id == user.id, RoleGrant.team_id == team.id)
                      .limit(1)) is None:
        raise NotFound(f"{user.user_name} is not a member of team {team.id}", team_id=team.id, user_id=user.id)
    return list(session.scalars(select(ApiKey.prefix).where(
        ApiKey.user_id == user.id, ApiKey.team_id == team.id, ApiKey.status != KeyStatus.REVOKED)
        .order_by(ApiKey.prefix)))


def remove_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str) -> None:
    """Take a member out of a team (every source's grant); its keys for that team are revoked."""
    # Leaving a team revokes the member's keys for it: on an owner that is an owner's business.
    team, user = _member_of(session, actor, "member.remove_from_team", org_id, team_id, user_id)
    grants = select(RoleGrant.id).where(RoleGrant.user_id == user.id, RoleGrant.team_id == team.id)
    if session.scalar(grants.limit(1)) is None:
        raise NotFound(f"{user.user_name} is not a member of team {team.id}", team_id=team.id)
    session.execute(delete(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.team_id == team.id))
    revoked = key_revocation.revoke_keys_of_teams_left(session, [user.id], team_id=team.id)
    record(session, actor, Action.TEAM_MEMBER_REMOVED, Target("user", user.id, user.user_name),
           {"team_id": team.id, "keys_revoked": revoked}, org_id=org_id)
