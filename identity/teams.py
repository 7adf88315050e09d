"""Teams (DESIGN.md section 3.1): created, renamed, deleted, joined and left. Ids never change."""

from __future__ import annotations

import re
import secrets
import unicodedata

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from audit import Actor, clock, record
from audit.log import Target
from identity import keys
from identity.errors import Conflict, InvalidValue, NotFound
from identity.grants import org_role
from identity.models import ApiKey, GroupMapping, Invitation, RoleGrant, Team
from identity.roles import authorize, parse_role

TEAM_ROLES = ("viewer", "member", "admin")


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


def get_team(session: Session, org_id: str, team_id: str) -> Team:
    """Return the org's team, or raise NotFound."""
    team = session.get(Team, team_id)
    if team is None or team.org_id != org_id:
        raise NotFound(f"no team {team_id!r} in this org", team_id=team_id)
    return team


def create_team(session: Session, actor: Actor, org_id: str, name: str, *, is_default: bool = False) -> Team:
    """Create a team whose id is the slug of its name and a short random suffix."""
    authorize(actor, "teams.manage", org_id=org_id)
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name)
    team = Team(id=f"{slugify(name)}-{secrets.token_hex(4)}", org_id=org_id, name=name, created_at=clock.now(),
                is_default=is_default)
    session.add(team)
    session.flush()
    record(session, actor, "team.created", Target("team", team.id, name), {"name": name}, org_id=org_id)
    return team


def rename_team(session: Session, actor: Actor, org_id: str, team_id: str, name: str) -> Team:
    """Rename a team; its id stays."""
    authorize(actor, "teams.manage", org_id=org_id)
    team = get_team(session, org_id, team_id)
    name = _clean_name(name)
    _ensure_free_name(session, org_id, name, keep=team.id)
    if name != team.name:
        record(session, actor, "team.renamed", Target("team", team.id, name),
               {"name": {"before": team.name, "after": name}}, org_id=org_id)
        team.name = name
    return team


def delete_team(session: Session, actor: Actor, org_id: str, team_id: str) -> None:
    """Delete a team: its memberships end, its API keys are revoked, the group mappings into it are
    deleted and its pending invitations expire, each audited. `Default` stays.

    Revoked keys and past invitations stay as records with their team unset (the foreign key
    sets it NULL); the audit events say which team it was.
    """
    from identity import groups, invitations  # both import this module

    authorize(actor, "teams.manage", org_id=org_id)
    team = get_team(session, org_id, team_id)
    if team.is_default:
        raise InvalidValue("the Default team cannot be deleted", field="team_id")
    for rule in session.scalars(select(GroupMapping).where(GroupMapping.org_id == org_id,
                                                            GroupMapping.team_id == team.id)).all():
        groups.delete_mapping(session, actor, org_id, rule.id)
    for invitation in session.scalars(select(Invitation).where(
            Invitation.org_id == org_id, Invitation.team_id == team.id, Invitation.status == "pending")).all():
        invitations.expire(session, invitation, actor, reason="team_deleted")
    live_keys = list(session.scalars(select(ApiKey).where(
        ApiKey.org_id == org_id, ApiKey.team_id == team.id, ApiKey.status != "revoked")))
    for key in live_keys:
        key.status, key.status_reason = "revoked", "team_deleted"
    revoked = [key.prefix for key in live_keys]
    members = session.scalar(select(func.count(func.distinct(RoleGrant.user_id))).where(RoleGrant.team_id == team.id))
    session.execute(delete(RoleGrant).where(RoleGrant.team_id == team.id))
    record(session, actor, "team.deleted", Target("team", team.id, team.name),
           {"name": team.name, "members_removed": members, "keys_revoked": revoked}, org_id=org_id)
    session.delete(team)
    session.flush()
    # The database unset the team of the keys and invitations that named it; so must the session.
    for row in session.identity_map.values():
        if isinstance(row, (ApiKey, Invitation)) and row.team_id == team.id:
            set_committed_value(row, "team_id", None)


def add_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str,
                    role: str = "member") -> None:
    """Add a member to a team with a team role (manual grant), or change that grant's role."""
    from identity.users import get_user  # users imports keys, which imports nothing of teams

    authorize(actor, "members.manage", org_id=org_id)
    role = parse_role(role, allowed=TEAM_ROLES)
    team = get_team(session, org_id, team_id)
    user = get_user(session, org_id, user_id)
    grant = session.scalars(select(RoleGrant).where(
        RoleGrant.user_id == user.id, RoleGrant.team_id == team.id, RoleGrant.source == "manual")).one_or_none()
    before = grant.role if grant else None
    if grant is None:
        session.add(RoleGrant(org_id=org_id, user_id=user.id, team_id=team.id, role=role, source="manual",
                              created_at=clock.now()))
    elif grant.role == role:
        return
    else:
        grant.role = role
    record(session, actor, "team.member_added" if before is None else "team.member_role_changed",
           Target("user", user.id, user.user_name),
           {"team_id": team.id, "team_role": {"before": before, "after": role}}, org_id=org_id)


def remove_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str) -> None:
    """Take a member out of a team (every source's grant); its keys for that team are revoked."""
    from identity.users import get_user

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
    record(session, actor, "team.member_removed", Target("user", user.id, user.user_name),
           {"team_id": team.id, "keys_revoked": revoked}, org_id=org_id)
