"""Reading an org's directory: members, teams, settings, invitations, group mappings and seats.

Each read authorizes its actor, then returns plain data (frozen dataclasses and dicts) that a
caller renders as it likes; nothing here writes. The entries' `of` builds one from a row, for a
service that has just changed that row and returns it as the reads do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from audit import Actor
from identity import orgs, seats, users
from identity.models import GroupMapping, Invitation, Org, Team, User
from identity.paging import Window, within
from identity.roles import authorize

MAX_INVITATIONS = 500  # the newest; older ones have long expired


@dataclass(frozen=True)
class Member:
    """A member as the directory shows it: the user, its org role and its teams' roles."""

    id: str
    user_name: str
    email: str | None
    active: bool
    role: str | None
    teams: Mapping[str, str]
    source: str

    @classmethod
    def of(cls, session: Session, user: User) -> Member:
        """Describe `user` with the roles it holds now (read in `session`)."""
        return cls(user.id, user.user_name, user.email, user.active, users.org_role(session, user.id),
                   users.team_roles(session, user.id), user.source)


@dataclass(frozen=True)
class MemberPage:
    """A page of members in id order; `next` is the cursor of the following page, None at the end."""

    members: list[Member]
    next: str | None


@dataclass(frozen=True)
class TeamEntry:
    id: str
    name: str
    default: bool
    created: dt.datetime

    @classmethod
    def of(cls, team: Team) -> TeamEntry:
        return cls(team.id, team.name, team.is_default, team.created_at)


@dataclass(frozen=True)
class InvitationEntry:
    id: str
    email: str
    role: str
    team_id: str | None
    status: str
    expires_at: dt.datetime
    created: dt.datetime

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationEntry:
        return cls(invitation.id, invitation.email, invitation.role, invitation.team_id, invitation.status,
                   invitation.expires_at, invitation.created_at)


@dataclass(frozen=True)
class MappingEntry:
    id: str
    group_external_id: str | None
    group_display_name: str | None
    team_id: str | None
    team_role: str | None
    org_role: str | None
    created: dt.datetime

    @classmethod
    def of(cls, rule: GroupMapping) -> MappingEntry:
        return cls(rule.id, rule.group_external_id, rule.group_display_name, rule.team_id, rule.team_role,
                   rule.org_role, rule.created_at)


def list_members(session: Session, actor: Actor, org_id: str, *, limit: int, after: str = "") -> MemberPage:
    """Return up to `limit` live members with ids after `after` (a keyset page)."""
    authorize(actor, "directory.read", org_id=org_id)
    found = list(session.scalars(select(User).where(User.org_id == org_id, User.deleted_at.is_(None),
                                                     User.id > after).order_by(User.id).limit(limit)))
    return MemberPage([Member.of(session, user) for user in found], found[-1].id if len(found) == limit else None)


def get_member(session: Session, actor: Actor, org_id: str, user_id: str) -> Member:
    """Return one member of the org (NotFound when it has none of that id)."""
    authorize(actor, "directory.read", org_id=org_id)
    return Member.of(session, users.get_user(session, org_id, user_id))


def list_teams(session: Session, actor: Actor, org_id: str, window: Window | None = None) -> list[TeamEntry]:
    """Return the org's teams, oldest first (those of `window`, and one more when there are more)."""
    authorize(actor, "directory.read", org_id=org_id)
    found = session.scalars(within(select(Team).where(Team.org_id == org_id), Team.created_at, Team.id, window))
    return [TeamEntry.of(team) for team in found]


def org_settings(session: Session, actor: Actor, org_id: str) -> dict[str, object]:
    """Return the org's settings (orgs.SETTINGS), by name."""
    authorize(actor, "directory.read", org_id=org_id)
    org = session.get_one(Org, org_id)
    return {name: getattr(org, name) for name in orgs.SETTINGS}


def list_invitations(session: Session, actor: Actor, org_id: str,
                     window: Window | None = None) -> list[InvitationEntry]:
    """Return the org's invitations, newest first (for those who manage members): those of `window`
    and one more when there are more; without a window the newest MAX_INVITATIONS."""
    authorize(actor, "members.manage", org_id=org_id)
    found = session.scalars(within(select(Invitation).where(Invitation.org_id == org_id), Invitation.created_at,
                                   Invitation.id, window or Window(MAX_INVITATIONS - 1), newest_first=True))
    return [InvitationEntry.of(invitation) for invitation in found]


def list_group_mappings(session: Session, actor: Actor, org_id: str,
                        window: Window | None = None) -> list[MappingEntry]:
    """Return the org's group mapping rules, oldest first (those of `window`, and one more when there are more)."""
    authorize(actor, "directory.read", org_id=org_id)
    found = session.scalars(within(select(GroupMapping).where(GroupMapping.org_id == org_id),
                                   GroupMapping.created_at, GroupMapping.id, window))
    return [MappingEntry.of(rule) for rule in found]


def seat_preview(session: Session, actor: Actor, org_id: str) -> seats.SeatPreview:
    """Return the org's seat position now (what the next member would cost)."""
    authorize(actor, "billing.read", org_id=org_id)
    return seats.preview(session.get_one(Org, org_id))
