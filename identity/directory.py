"""Reading an org's directory: members, teams, settings, invitations, group mappings and seats
(the seat ledger's pages: identity.charges).

Each read authorizes its actor, then returns plain data (frozen dataclasses and dicts) that a
caller renders as it likes; nothing here writes. The entries' `of` builds one from a row, for a
service that has just changed that row and returns it as the reads do.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, case, exists, func, literal, or_, select, union_all
from sqlalchemy.orm import Session, aliased

from audit import Actor
from identity import grants, invitations, orgs, seats, users
from identity.errors import InvalidValue, NotFound
from identity.lookups import acting_user_id, get_team
from identity.models import GroupMapping, Invitation, Org, RoleGrant, Team, User
from identity.names import name_key
from identity.paging import Position, Window, by_id, split, split_by_id, within
from identity.roles import RANK, ROLES, SOURCES, authorize, highest, refusal
from identity.vocabulary import Role

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
        return cls.each(session, [user])[0]

    @classmethod
    def each(cls, session: Session, found: list[User]) -> list[Member]:
        """Describe each of `found` with the roles it holds now: two queries, however many they are."""
        ids = [user.id for user in found]
        org, teams = grants.org_roles(session, ids), grants.teams_roles(session, ids)
        return [cls(user.id, user.user_name, user.email, user.active, org.get(user.id), teams.get(user.id, {}),
                    user.source) for user in found]


@dataclass(frozen=True)
class MemberPage:
    """A page of members in id order; `next` is the cursor of the following page, None at the end;
    `previous` the cursor (`before`) of the page before it, None on the first."""

    members: list[Member]
    next: str | None
    previous: str | None = None


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
    status: str  # as of now: a pending invitation past its time reads `expired`, swept or not
    expires_at: dt.datetime
    created: dt.datetime

    @classmethod
    def of(cls, invitation: Invitation) -> InvitationEntry:
        return cls(invitation.id, invitation.email, invitation.role, invitation.team_id,
                   invitations.status_now(invitation), invitation.expires_at, invitation.created_at)


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


def list_members(session: Session, actor: Actor, org_id: str, *, limit: int, after: str = "",
                 before: str = "") -> MemberPage:
    """Return up to `limit` live members with ids after `after`, or those just before `before` (a keyset page)."""
    authorize(actor, "directory.read", org_id=org_id)
    found = list(session.scalars(by_id(select(User).where(User.org_id == org_id, User.deleted_at.is_(None)), User.id,
                                       limit=limit, after=after, before=before)))
    page, following, previous = split_by_id(found, lambda user: user.id, limit=limit, after=after, before=before)
    return MemberPage(Member.each(session, page), following, previous)


def get_member(session: Session, actor: Actor, org_id: str, user_id: str) -> Member:
    """Return one member of the org (NotFound when it has none of that id)."""
    authorize(actor, "directory.read", org_id=org_id)
    return Member.of(session, users.get_user(session, org_id, user_id))


def team_names(session: Session, actor: Actor, org_id: str, team_ids: Iterable[str]) -> dict[str, str]:
    """Return {team id: name} for those of `team_ids` that are the org's teams (the names a page's rows show)."""
    authorize(actor, "directory.read", org_id=org_id)
    wanted = sorted(set(team_ids))
    if not wanted:
        return {}
    rows = session.execute(select(Team.id, Team.name).where(Team.org_id == org_id, Team.id.in_(wanted)))
    return {team_id: name for team_id, name in rows}


def find_team(session: Session, actor: Actor, org_id: str, id_or_name: str) -> TeamEntry:
    """Return the org's team with this id, else the one of this name (names are unique per org by
    their key, identity.names.name_key: `ÉQUIPE` finds `Équipe`): how a person names one team among
    thousands (NotFound when none is)."""
    authorize(actor, "directory.read", org_id=org_id)
    typed = id_or_name.strip()
    found = session.scalars(select(Team).where(Team.org_id == org_id, or_(
        Team.id == typed, Team.name_key == name_key(typed))).order_by(Team.id != typed).limit(1)).first()
    if found is None:
        raise NotFound(f"no team {typed!r} in this org: type its name or id", field="team_id", team=typed)
    return TeamEntry.of(found)


def list_teams(session: Session, actor: Actor, org_id: str, window: Window | None = None) -> list[TeamEntry]:
    """Return the org's teams, oldest first (those of `window`, and one more when there are more)."""
    authorize(actor, "directory.read", org_id=org_id)
    found = session.scalars(within(select(Team).where(Team.org_id == org_id), Team.created_at, Team.id, window))
    return [TeamEntry.of(team) for team in found]


@dataclass(frozen=True)
class TeamSummary:
    """A team as the team list shows it: the caller's role in it and how many members it has.

    `member_count` is exact when `member_count_exact`; otherwise the team has more than that many
    (MEMBER_COUNT_CAP: shown as "100+")."""

    team: TeamEntry
    your_role: str | None
    member_count: int
    member_count_exact: bool = True


@dataclass(frozen=True)
class TeamPage:
    """A page of teams, oldest first; `next` is where the following page starts (None: the last page),
    `previous` where the one before it ends (None: the first page, as far as the reading tells)."""

    teams: list[TeamSummary]
    next: Position | None
    previous: Position | None = None


MEMBER_COUNT_CAP = 100  # a team count stops here: the list shows "100+" (docs/performance.md)
COUNTS_PER_STATEMENT = 250  # SQLite allows 500 terms in a compound SELECT


def _member_count(team_id: Any) -> Any:
    """Count a team's active members, up to one past MEMBER_COUNT_CAP.

    A deactivated member keeps their grants (reactivation gives them back, DESIGN 3.5) but is not a
    member the team has now. A member is counted at their first grant in the team, so that the
    count walks ix_role_grants_team_grant and stops after the cap, however big the team (Default
    holds everyone).
    """
    earlier = aliased(RoleGrant)
    first = ~exists().where(earlier.user_id == RoleGrant.user_id, earlier.team_id == RoleGrant.team_id,
                            earlier.id < RoleGrant.id)
    counted = (select(RoleGrant.id).join(User, User.id == RoleGrant.user_id)
               .where(RoleGrant.team_id == team_id, User.active.is_(True), User.deleted_at.is_(None), first)
               .order_by(RoleGrant.id).limit(MEMBER_COUNT_CAP + 1))
    return select(func.count()).select_from(counted.subquery())


def _member_counts(session: Session, team_ids: list[str]) -> dict[str, int]:
    """Count each team's members (up to the cap): one statement, a branch per team, so that PostgreSQL
    plans each team's count for its own team (a correlated count has one plan for every team, and
    the plan for the Default team, which holds everyone, walks the whole grants table for a small one)."""
    found: dict[str, int] = {}
    for start in range(0, len(team_ids), COUNTS_PER_STATEMENT):
        branches = [select(literal(team_id, String).label("team_id"), _member_count(team_id).scalar_subquery())
                    for team_id in team_ids[start:start + COUNTS_PER_STATEMENT]]
        found.update((team_id, int(n or 0)) for team_id, n in session.execute(union_all(*branches)))
    return found


def _summary(team: Team, your_role: str | None, counted: int | None) -> TeamSummary:
    counted = counted or 0
    return TeamSummary(TeamEntry.of(team), your_role, min(counted, MEMBER_COUNT_CAP), counted <= MEMBER_COUNT_CAP)


def _rank_of_role() -> Any:
    return case({role: rank for rank, role in enumerate(ROLES)}, value=RoleGrant.role)


def _your_rank(user_id: str | None) -> Any:
    return (select(func.max(_rank_of_role())).where(RoleGrant.team_id == Team.id, RoleGrant.user_id == user_id)
            .correlate(Team).scalar_subquery())


def team_page(session: Session, actor: Actor, org_id: str, *, limit: int, after: Position | None = None,
              before: Position | None = None, yours_only: bool = False) -> TeamPage:
    """Return up to `limit` teams after the cursor `after` (or those just before `before`), oldest
    first, each with the caller's role and its member count (up to the cap): two queries, however
    many teams the page holds. `yours_only`: the teams the caller holds a grant in, read by their
    grants (ix_role_grants_user), so a member of the 5,000th team of an org finds it on their page."""
    authorize(actor, "directory.read", org_id=org_id)
    you = acting_user_id(session, actor)
    stmt = select(Team, _your_rank(you)).where(Team.org_id == org_id)
    if yours_only:
        stmt = stmt.where(Team.id.in_(select(RoleGrant.team_id).where(RoleGrant.user_id == you)))
    back = before is not None
    window = Window(limit, before if back else after)
    rows = list(session.execute(within(stmt, Team.created_at, Team.id, window, newest_first=back)))
    counts = _member_counts(session, [team.id for team, _ in rows])
    found = [_summary(team, None if rank is None else ROLES[rank], counts[team.id]) for team, rank in rows]
    page, beyond = split(found, window, _team_position)
    if back:  # read newest first from `before`: `beyond` says a page precedes this one
        page = page[::-1]
        return TeamPage(page, _team_position(page[-1]) if page else None,
                        _team_position(page[0]) if beyond and page else None)
    return TeamPage(page, beyond, _team_position(page[0]) if after is not None and page else None)


def _team_position(summary: TeamSummary) -> Position:
    return Position(summary.team.created, summary.team.id)


@dataclass(frozen=True)
class TeamGrant:
    """One source's grant of a team role: `group_id` names the IdP group that gave it, if one did."""

    role: str
    source: str
    group_id: str | None


@dataclass(frozen=True)
class TeamMember:
    """A member of a team: its highest team role, the source of that grant, and every grant."""

    user_id: str
    user_name: str
    email: str | None
    active: bool
    team_role: str
    source: str
    grants: tuple[TeamGrant, ...]


@dataclass(frozen=True)
class TeamDetail:
    """A team with a page of its members (by user id; `next` is the cursor of the following page)."""

    summary: TeamSummary
    members: list[TeamMember]
    next: str | None


def get_team_detail(session: Session, actor: Actor, org_id: str, team_id: str, *, limit: int,
                    after: str = "") -> TeamDetail:
    """Return a team, the caller's role in it, its member count and a page of its members.

    Members come in the order they joined the team (their first grant there); `after` is the `next`
    of the previous page. A page walks ix_role_grants_team_grant from the cursor: it reads its own
    members' rows, however big the team.
    """
    authorize(actor, "directory.read", org_id=org_id)
    team = get_team(session, org_id, team_id)
    count = session.scalar(_member_count(team.id))
    you = acting_user_id(session, actor)
    yours = highest(session.scalars(select(RoleGrant.role).where(RoleGrant.team_id == team.id,
                                                                 RoleGrant.user_id == you))) if you else None
    page = list(session.execute(_first_grants(team.id, _grant_cursor(after), limit)))
    ids = [user_id for _, user_id in page]
    grants: dict[str, list[TeamGrant]] = {}
    for user_id, role, source, ref in session.execute(select(
            RoleGrant.user_id, RoleGrant.role, RoleGrant.source, RoleGrant.source_ref).where(
            RoleGrant.user_id.in_(ids), RoleGrant.team_id == team.id)):
        grants.setdefault(user_id, []).append(TeamGrant(role, source, ref or None))
    people = {user.id: user for user in session.scalars(select(User).where(User.id.in_(ids)))}
    members = [_team_member(people[user_id], grants[user_id]) for user_id in ids]
    return TeamDetail(_summary(team, yours, count), members, str(page[-1][0]) if len(page) == limit else None)


def _grant_cursor(after: str) -> int:
    if after == "":
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > 18:  # "²" is a digit to str.isdigit
        raise InvalidValue("after must be the `next` of the previous page", field="after")
    return int(after)


def _first_grants(team_id: str, after: int, limit: int) -> Any:
    """Each member's first grant in the team after grant `after`, in grant order: (grant id, user id)."""
    earlier = aliased(RoleGrant)
    first = ~exists().where(earlier.user_id == RoleGrant.user_id, earlier.team_id == RoleGrant.team_id,
                            earlier.id < RoleGrant.id)
    return (select(RoleGrant.id, RoleGrant.user_id).where(RoleGrant.team_id == team_id, RoleGrant.id > after, first)
            .order_by(RoleGrant.id).limit(limit))


def _team_member(user: User, grants: list[TeamGrant]) -> TeamMember:
    ordered = sorted(grants, key=lambda g: (-RANK[g.role], SOURCES.index(g.source), g.group_id or ""))
    return TeamMember(user.id, user.user_name, user.email, user.active, ordered[0].role, ordered[0].source,
                      tuple(ordered))


def org_settings(session: Session, actor: Actor, org_id: str) -> dict[str, object]:
    """Return the org's settings (orgs.SETTINGS) that `actor` may read, by name: billing and IdP
    trust only to owners and admins (orgs.readable_settings)."""
    authorize(actor, "directory.read", org_id=org_id)
    return orgs.readable_settings(actor, session.get_one(Org, org_id))


def list_invitations(session: Session, actor: Actor, org_id: str, window: Window | None = None, *,
                     status: str | None = None) -> list[InvitationEntry]:
    """Return the org's invitations, newest first (for those who manage members): those of `window`
    and one more when there are more; without a window the newest MAX_INVITATIONS. With `status`, only
    those of that status as of now (filtered in the query, so that a page is full)."""
    authorize(actor, "members.manage", org_id=org_id)
    stmt = select(Invitation).where(Invitation.org_id == org_id)
    if status is not None:
        stmt = stmt.where(invitations.status_is(invitations.parse_status(status)))
    found = session.scalars(within(stmt, Invitation.created_at, Invitation.id, window or Window(MAX_INVITATIONS - 1),
                                   newest_first=True))
    return [InvitationEntry.of(invitation) for invitation in found]


def list_group_mappings(session: Session, actor: Actor, org_id: str,
                        window: Window | None = None) -> list[MappingEntry]:
    """Return the org's group mapping rules, oldest first (those of `window`, and one more when there are more).

    A rule that grants `owner` is IdP trust (DESIGN 3.2): left out for whoever may not read that,
    in the query, so that a page stays full.
    """
    authorize(actor, "directory.read", org_id=org_id)
    stmt = select(GroupMapping).where(GroupMapping.org_id == org_id)
    if refusal(actor, "trust.read", org_id=org_id) is not None:
        stmt = stmt.where(or_(GroupMapping.org_role.is_(None), GroupMapping.org_role != Role.OWNER))
    found = session.scalars(within(stmt, GroupMapping.created_at, GroupMapping.id, window))
    return [MappingEntry.of(rule) for rule in found]


def seat_preview(session: Session, actor: Actor, org_id: str) -> seats.SeatPreview:
    """Return the org's seat position now (what the next member would cost)."""
    authorize(actor, "billing.read", org_id=org_id)
    return seats.preview(session.get_one(Org, org_id), pending_invitations=invitations.pending_count(session, org_id))


def get_team_member(session: Session, actor: Actor, org_id: str, team_id: str, user_id: str) -> TeamMember:
    """Return one member of a team with its grants there (NotFound when the user is not in it)."""
    authorize(actor, "directory.read", org_id=org_id)
    team, user = get_team(session, org_id, team_id), users.get_user(session, org_id, user_id)
    grants = [TeamGrant(role, source, ref or None) for role, source, ref in session.execute(select(
        RoleGrant.role, RoleGrant.source, RoleGrant.source_ref).where(RoleGrant.team_id == team.id,
                                                                      RoleGrant.user_id == user.id))]
    if not grants:
        raise NotFound(f"{user.user_name} is not a member of team {team.id}", team_id=team.id, user_id=user.id)
    return _team_member(user, grants)
