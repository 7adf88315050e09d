"""Admin API: the org's teams (list, create, rename, delete)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import directory, team_deletion, teams
from identity.directory import TeamEntry
from identity.paging import Position
from identity.service import run
from identity.web.api.common import (
    ADMIN,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    known_args,
    page_window,
    paged,
    text,
)
from identity.web.context import database

bp = adopt(Blueprint("api_teams", __name__, url_prefix="/api/v1"))


def team_json(team: TeamEntry) -> dict[str, Any]:
    """Render a team as the admin API shows it."""
    return {"id": team.id, "name": team.name, "default": team.default, "created": team.created.isoformat()}


@bp.get("/orgs/<org_ref>/teams")
@authenticated(scope=ADMIN)
def list_teams(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    known_args("limit", "after")
    window = page_window()
    with database().reading() as session:
        found, after = paged(directory.list_teams(session, g.actor, org_id, window), window,
                             lambda t: Position(t.created, t.id))
    return jsonify({"teams": [team_json(t) for t in found], "next": after})


@bp.post("/orgs/<org_ref>/teams")
@authenticated(scope=ADMIN)
def create_team(org_ref: str) -> tuple[Response, int]:
    org_id = caller_org_id(org_ref)
    team = run(database(), g.actor, teams.create_team, org_id, text(json_body("name"), "name", ""))
    return jsonify(team_json(TeamEntry.of(team))), 201


@bp.patch("/orgs/<org_ref>/teams/<team_id>")
@authenticated(scope=ADMIN)
def rename_team(org_ref: str, team_id: str) -> Response:
    org_id = caller_org_id(org_ref)
    team = run(database(), g.actor, teams.rename_team, org_id, team_id, text(json_body("name"), "name", ""))
    return jsonify(team_json(TeamEntry.of(team)))


@bp.delete("/orgs/<org_ref>/teams/<team_id>")
@authenticated(scope=ADMIN)
def delete_team(org_ref: str, team_id: str) -> tuple[str, int]:
    run(database(), g.actor, team_deletion.delete_team, caller_org_id(org_ref), team_id)
    return "", 204
