"""Teams (DESIGN.md section 3.1): created, renamed, joined and left. Ids never change.

Deleting a team reaches into group mappings and invitations, which build on this module: it
lives above them, in identity.team_deletion.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target
from identity import keys
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound
from identity.grants import org_role
from identity.lookups import get_team, get_user
from identity.models import RoleGrant, Team
from identity.roles import authorize, parse_role
from identity.vocabulary import GrantSource, Role

TEAM_ROLES = (Role.VIEWER, Role.MEMBER, Role.ADMIN)


def slugify(name: str, *, max_length: int = 40) -> str:
    """Return a lowercase ASCII slug of `name` ('Data Science!' -> 'data-science')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return slug[:max_length].strip("-") or "team"


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name or len(name) > 200:
        raise InvalidValue("a team name must have 1 to 200 characters", field="name")
    return name


def _ensure_free_name(session: Session, org_id: str, name: str, keep: str | None = None) -> None:
    clash = session.scalars(select(Team).where(Team.org_id == org_id, func.lower(Team.name) == name.lower())).first()
    if clash is not None and clash.id != keep:
        raise Conflict(f"a team named {name!r} already exists", field="name")


def create_team(session: Session, actor: Actor, org_id: str, name: str, *, is_default: bool = False) -> Team:
    """Create a team whose id is the slug of its name and a short random suffix."""
    authorize(actor, "teams.manage", org_id=org_id)
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name)
    team = Team(id=f"{slugify(name)}-{secrets.token_hex(4)}", org_id=org_id, name=name, created_at=clock.now(),
                is_default=is_default)
    session.add(team)
    session.flush()
    record(session, actor, Action.TEAM_CREATED, Target("team", team.id, name), {"name": name}, org_id=org_id)
    return team


def rename_team(session: Session, actor: Actor, org_id: str, team_id: str, name: str) -> Team:
    """Rename a team; its id stays."""
    authorize(actor, "teams.manage", org_id=org_id)
    team = get_team(session, org_id, team_id)
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name, keep=team.id)
    if name != team.name:
        record(session, actor, Action.TEAM_RENAMED, Target("team", team.id, name),
               {"name": {"before": team.name, "after": name}}, org_id=org_id)
        team.name = name
    return team


def add_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str,
                    role: str = Role.MEMBER) -> None:
    """Add a member to a team with a team role (manual grant), or change that grant's role."""
    authorize(actor, "members.manage", org_id=org_id)
    role = parse_role(role, allowed=TEAM_ROLES)
    team = get_team(session, org_id, team_id)
    user = get_user(session, org_id, user_id)
    grant = session.scalars(select(RoleGrant).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id == team.id, RoleGrant.source == GrantSource.MANUAL,
    )).one_or_none()
    before = grant.role if grant else None
    if grant is None:
        session.add(RoleGrant(org_id=org_id, user_id=user.id, team_id=team.id, role=role, source=GrantSource.MANUAL,
                              created_at=clock.now()))
    elif grant.role == role:
        return
    else:
        grant.role = role
    record(session, actor, Action.TEAM_MEMBER_ADDED if before is None else Action.TEAM_MEMBER_ROLE_CHANGED,
           Target("user", user.id, user.user_name),
           {"team_id": team.id, "team_role": {"before": before, "after": role}}, org_id=org_id)


def remove_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str) -> None:
    """Take a member out of a team (every source's grant); its keys for that team are revoked."""
    authorize(actor, "member.remove_from_team", org_id=org_id)
    team = get_team(session, org_id, team_id)
    user = get_user(session, org_id, user_id)
    # Leaving a team revokes the member's keys for it: on an owner that is an owner's business.
    authorize(actor, "member.remove_from_team", org_id=org_id, target_role=org_role(session, user.id))
    grants = select(RoleGrant.id).where(RoleGrant.user_id == user.id, RoleGrant.team_id == team.id)
    if session.scalar(grants.limit(1)) is None:
        raise NotFound(f"{user.user_name} is not a member of team {team.id}", team_id=team.id)
    session.execute(delete(RoleGrant).where(RoleGrant.user_id == user.id, RoleGrant.team_id == team.id))
    revoked = keys.revoke_team_keys(session, user, team.id)
    record(session, actor, Action.TEAM_MEMBER_REMOVED, Target("user", user.id, user.user_name),
           {"team_id": team.id, "keys_revoked": revoked}, org_id=org_id)
