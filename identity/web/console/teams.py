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

from flask import Blueprint, g, redirect, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from identity import directory, grants, team_deletion, teams, topups, wallet_list, wallets
from identity.directory import TeamDetail
from identity.errors import DomainError, NotFound, PermissionDenied
from identity.spend import WalletView
from identity.web.api.query import cursor, position_of
from identity.web.console.common import (
    console_page,
    field,
    form_errors,
    may,
    page_link,
    page_position,
    placed,
    reading,
    redirect_with_notice,
    render,
    require,
    status_of,
    submit,
)

bp = Blueprint("console_teams", __name__, url_prefix="/console")
PAGE = "/console/teams"
TEAM_ROLES = ("viewer", "member", "admin")
MEMBERS_SHOWN = 200  # members listed under an expanded team per page (`?members_after=` the next page)
TEAMS_SHOWN = 500  # teams on a page (`?after=`/`?before=`: the next and the previous page)


def _team_page(session: Session) -> directory.TeamPage:
    """The page of teams the position asks for: every team for those who manage teams, the person's
    own teams (read by their grants) for everyone else."""
    here = _here()
    return directory.team_page(session, g.actor, g.caller.org_id, limit=TEAMS_SHOWN,
                               after=position_of(here["after"]), before=position_of(here["before"], "before"),
                               yours_only=not may("teams.manage"))


def _here() -> dict[str, str]:
    """Which page of teams: the link's `after`/`before`, or the fields a row's form carries back."""
    return page_position("after", "before")


def _wallets(session: Session, team_ids: list[str]) -> dict[str, WalletView]:
    """The listed teams' wallets, read at once for their column (none when the caller may not read usage)."""
    try:
        return wallet_list.team_wallets(session, g.actor, g.caller.org_id, team_ids)
    except PermissionDenied:
        return {}


def _page(*, status: int = 200, errors: dict[str, str] | None = None, **state: Any) -> Response:
    """The teams page; `state` says which row is open for rename or delete, or expanded (`team`).

    An expanded team that is not on this page of teams (just made, or linked from elsewhere) is
    shown under the list, so `?team=<id>` always opens it."""
    open_team = state.get("team") or request.args.get("team", "")
    with reading() as session:
        listed = _team_page(session)
        summaries = listed.teams
        slots = _wallets(session, [t.team.id for t in summaries])
        may_top_up = bool(slots) and wallets.may_top_up(session, g.actor, g.caller.org_id)
        # Read only for whom the page offers Delete (its note stands in for it): no query for the others.
        charging = topups.teams_charging(session, [t.team.id for t in summaries]) if may("teams.manage") else set()
        detail: TeamDetail | None = None
        if open_team:
            try:
                detail = directory.get_team_detail(session, g.actor, g.caller.org_id, open_team, limit=MEMBERS_SHOWN,
                                                   after=_members_after())
            except NotFound:
                detail = None
        # Each member's org role: what the console may offer to do to them (identity.roles, as the services ask)
        org_roles = grants.org_roles(session, [m.user_id for m in detail.members]) if detail else {}
    shown = [t.team.id for t in summaries]
    errors = placed(errors, {"name-": shown, "delete-": shown,
                             "role-": [m.user_id for m in detail.members] if detail else []})
    return render("console/teams.html", status=status, errors=errors, title="Teams", nav="teams",
                  teams=summaries, wallets=slots, may_top_up=may_top_up, charging=charging,
                  detail=detail, team_roles=TEAM_ROLES,
                  org_roles=org_roles, here=_here(), next_page=cursor(listed.next),
                  previous_page=cursor(listed.previous), detail_listed=bool(detail) and open_team in shown,
                  invite_address=state.get("invite_address", ""),
                  rename=state.get("rename") or request.args.get("rename", ""),
                  delete=state.get("delete") or request.args.get("delete", ""))


@bp.get("/teams")
@console_page
def teams_page() -> Response:
    """List the teams (`?team=<id>` expands one, `?rename=` and `?delete=` open a row's form without JS)."""
    return _page()


@bp.get("/teams/<team_id>")
@console_page
def team_link(team_id: str) -> Response:
    """A team's own address (what its forms' addresses lead back to, common.form_page): the list with it open."""
    return redirect(f"{PAGE}?team={quote(team_id)}#members-{quote(team_id)}", 303)


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
    return redirect_with_notice(f"{page_link(PAGE, _here())}#team-{team.id}", f"Team renamed to '{team.name}'.")


@bp.post("/teams/<team_id>/delete")
@console_page
def delete_team(team_id: str) -> Response:
    """Delete a team; the form's `confirm` is the team's name, as the admin API asks."""
    try:
        submit(team_deletion.delete_team, g.caller.org_id, team_id, confirm=field("confirm"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"delete-{team_id}"),
                     delete=team_id)
    return redirect_with_notice(page_link(PAGE, _here()), f"Team '{field('confirm')}' deleted.")


def _members_after() -> str:
    """Which page of an expanded team's members: the link's `members_after`, or the field a form carries back."""
    return request.values.get("members_after", "")


def _expanded(team_id: str) -> str:
    """The teams page the form came from, with the team expanded at the page of its members it showed."""
    return f"{page_link(PAGE, _here(), team=team_id, members_after=_members_after())}#members-{team_id}"


@bp.post("/teams/<team_id>/members")
@console_page
def add_team_member(team_id: str) -> Response:
    """Add an existing member of the org, named by email or userName, to the team with a team role."""
    try:
        user = submit(teams.add_team_member_by_address, g.caller.org_id, team_id, field("member"),
                      field("role", "member"))
    except DomainError as error:
        address = str(error.context.get("address", ""))
        # Nobody in the org by that address: offer to invite them to this team (OLLM's "+ Invite"), to whoever may
        return _refused(error, team=team_id,
                        invite_address=address if isinstance(error, NotFound) and "@" in address else "")
    return redirect_with_notice(_expanded(team_id), f"{user.email or user.user_name} added to the team.")


@bp.post("/teams/<team_id>/members/<user_id>/role")
@console_page
def change_team_role(team_id: str, user_id: str) -> Response:
    try:
        role = submit(teams.change_team_role, g.caller.org_id, team_id, user_id, field("role"))
    except DomainError as error:
        return _page(status=status_of(error), errors=form_errors(error, f"role-{user_id}"), team=team_id)
    return redirect_with_notice(_expanded(team_id), f"Team role changed to {role}.")


@bp.get("/teams/<team_id>/members/<user_id>/remove")
@console_page
def removal_page(team_id: str, user_id: str) -> Response:
    """Say what removing the member from the team does (how many of their keys it revokes) before it is done."""
    try:
        with reading() as session:
            prefixes = teams.removal_preview(session, g.actor, g.caller.org_id, team_id, user_id)
            member = directory.get_team_member(session, g.actor, g.caller.org_id, team_id, user_id)
            team = directory.get_team_detail(session, g.actor, g.caller.org_id, team_id, limit=1).summary.team
            role = grants.org_roles(session, [user_id]).get(user_id)
    except DomainError as error:
        return _refused(error, team=team_id)
    require("member.remove_from_team", role)  # as the list offers it: else the refusal page, no danger button
    return render("console/team_removal.html", title="Remove from team", nav="teams", team=team, member=member,
                  prefixes=prefixes, here=_here())


@bp.post("/teams/<team_id>/members/<user_id>/remove")
@console_page
def remove_team_member(team_id: str, user_id: str) -> Response:
    try:
        submit(teams.remove_team_member, g.caller.org_id, team_id, user_id)
    except DomainError as error:
        return _refused(error, team=team_id)
    return redirect_with_notice(_expanded(team_id), "Member removed from the team.")
