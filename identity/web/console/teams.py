"""Console page: Teams (OLLM's list): each with its id, your role and member count; create,
rename inline, delete with an inline confirmation; a team expanded to its members, who can be
added (typed by email or userName: an org of thousands is no list to choose from), given another
team role, or removed (after a page that says how many keys that revokes).

Every change is one domain service (identity.teams, identity.team_deletion) run as the signed-in
person; the list offers only what their role may do, and the services refuse the rest.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, g, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from identity import directory, grants, team_deletion, teams, wallet_list, wallets
from identity.directory import TeamDetail, TeamSummary
from identity.errors import DomainError, NotFound, PermissionDenied
from identity.spend import WalletView
from identity.web.console.common import (
    console_page,
    field,
    form_errors,
    may,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)

bp = Blueprint("console_teams", __name__, url_prefix="/console")
PAGE = "/console/teams"
TEAM_ROLES = ("viewer", "member", "admin")
MEMBERS_SHOWN = 200  # members listed under an expanded team per page (`?members_after=` the next page)
TEAMS_SHOWN = 500


def _visible_teams(summaries: list[TeamSummary]) -> list[TeamSummary]:
    """Every team for those who manage teams; the teams the person belongs to for everyone else."""
    return summaries if may("teams.manage") else [t for t in summaries if t.your_role is not None]


def _wallets(session: Session, team_ids: list[str]) -> dict[str, WalletView]:
    """The listed teams' wallets, read at once for their column (none when the caller may not read usage)."""
    try:
        return wallet_list.team_wallets(session, g.actor, g.caller.org_id, team_ids)
    except PermissionDenied:
        return {}


def _page(*, status: int = 200, errors: dict[str, str] | None = None, **state: Any) -> Response:
    """The teams page; `state` says which row is open for rename or delete, or expanded (`team`)."""
    open_team = state.get("team") or request.args.get("team", "")
    with reading() as session:
        summaries = _visible_teams(directory.team_page(session, g.actor, g.caller.org_id, limit=TEAMS_SHOWN).teams)
        slots = _wallets(session, [t.team.id for t in summaries])
        may_top_up = bool(slots) and wallets.may_top_up(session, g.actor, g.caller.org_id)
        detail: TeamDetail | None = None
        if open_team:
            try:
                detail = directory.get_team_detail(session, g.actor, g.caller.org_id, open_team, limit=MEMBERS_SHOWN,
                                                   after=_members_after())
            except NotFound:
                detail = None
        # Each member's org role: what the console may offer to do to them (identity.roles, as the services ask)
        org_roles = grants.org_roles(session, [m.user_id for m in detail.members]) if detail else {}
    return render("console/teams.html", status=status, errors=errors, title="Teams", nav="teams",
                  teams=summaries, wallets=slots, may_top_up=may_top_up, detail=detail, team_roles=TEAM_ROLES,
                  org_roles=org_roles,
                  rename=state.get("rename") or request.args.get("rename", ""),
                  delete=state.get("delete") or request.args.get("delete", ""))


@bp.get("/teams")
@console_page
def teams_page() -> Response:
    """List the teams (`?team=<id>` expands one, `?rename=` and `?delete=` open a row's form without JS)."""
    return _page()


def _refused(error: DomainError, **state: Any) -> Response:
    return _page(status=status_of(error), errors=form_errors(error), **state)


@bp.post("/teams")
@console_page
def create_team() -> Response:
    try:
        team = submit(teams.create_team, g.caller.org_id, field("name"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, "new_name"))
    return redirect_with_notice(f"{PAGE}?team={team.id}#team-{team.id}", f"Team '{team.name}' created.")


@bp.post("/teams/<team_id>/rename")
@console_page
def rename_team(team_id: str) -> Response:
    try:
        team = submit(teams.rename_team, g.caller.org_id, team_id, field("name"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"name-{team_id}"), rename=team_id)
    return redirect_with_notice(f"{PAGE}#team-{team.id}", f"Team renamed to '{team.name}'.")


@bp.post("/teams/<team_id>/delete")
@console_page
def delete_team(team_id: str) -> Response:
    """Delete a team; the form's `confirm` is the team's name, as the admin API asks."""
    try:
        submit(team_deletion.delete_team, g.caller.org_id, team_id, confirm=field("confirm"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"delete-{team_id}"),
                     delete=team_id)
    return redirect_with_notice(PAGE, f"Team '{field('confirm')}' deleted.")


def _members_after() -> str:
    """Which page of an expanded team's members: the link's `members_after`, or the field a form carries back."""
    return request.values.get("members_after", "")


def _team_page(team_id: str) -> str:
    after = _members_after()
    return f"{PAGE}?team={team_id}{f'&members_after={quote(after)}' if after else ''}#members-{team_id}"


@bp.post("/teams/<team_id>/members")
@console_page
def add_team_member(team_id: str) -> Response:
    """Add an existing member of the org, named by email or userName, to the team with a team role."""
    try:
        user = submit(teams.add_team_member_by_address, g.caller.org_id, team_id, field("member"),
                      field("role", "member"))
    except DomainError as error:
        return _refused(error, team=team_id)
    return redirect_with_notice(_team_page(team_id), f"{user.email or user.user_name} added to the team.")


@bp.post("/teams/<team_id>/members/<user_id>/role")
@console_page
def change_team_role(team_id: str, user_id: str) -> Response:
    try:
        role = submit(teams.change_team_role, g.caller.org_id, team_id, user_id, field("role"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"role-{user_id}"), team=team_id)
    return redirect_with_notice(_team_page(team_id), f"Team role changed to {role}.")


@bp.get("/teams/<team_id>/members/<user_id>/remove")
@console_page
def removal_page(team_id: str, user_id: str) -> Response:
    """Say what removing the member from the team does (how many of their keys it revokes) before it is done."""
    try:
        with reading() as session:
            prefixes = teams.removal_preview(session, g.actor, g.caller.org_id, team_id, user_id)
            member = directory.get_team_member(session, g.actor, g.caller.org_id, team_id, user_id)
            team = directory.get_team_detail(session, g.actor, g.caller.org_id, team_id, limit=1).summary.team
    except DomainError as error:
        return _refused(error, team=team_id)
    return render("console/team_removal.html", title="Remove from team", nav="teams", team=team, member=member,
                  prefixes=prefixes)


@bp.post("/teams/<team_id>/members/<user_id>/remove")
@console_page
def remove_team_member(team_id: str, user_id: str) -> Response:
    try:
        submit(teams.remove_team_member, g.caller.org_id, team_id, user_id)
    except DomainError as error:
        return _refused(error, team=team_id)
    return redirect_with_notice(_team_page(team_id), "Member removed from the team.")
