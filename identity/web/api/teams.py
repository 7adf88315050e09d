"""Admin API: the org's teams (list, read, create, rename, delete) and their members.

Removing a member from a team revokes their keys for that team; how many, and which, is shown
first by `GET .../teams/<id>/members/<user_id>/removal` (a read, with the removal's own
permission), so that a console can say "this revokes 2 keys" before the DELETE.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import directory, team_deletion, teams
from identity.directory import TeamEntry, TeamMember, TeamSummary
from identity.errors import InvalidValue
from identity.service import run
from identity.web.api.common import ADMIN, DIRECTORY_READ, adopt, authenticated, caller_org_id, json_body, role, text
from identity.web.api.query import LIMIT_QUERY, cursor, one_arg, page_limit, page_window
from identity.web.context import database

bp = adopt(Blueprint("api_teams", __name__, url_prefix="/api/v1"))


def team_json(team: TeamEntry) -> dict[str, Any]:
    """Render a team as the admin API shows it."""
    return {"id": team.id, "name": team.name, "default": team.default, "created": team.created.isoformat()}


def summary_json(summary: TeamSummary) -> dict[str, Any]:
    """Render a team with the caller's role in it and its member count."""
    return {**team_json(summary.team), "your_role": summary.your_role, "member_count": summary.member_count,
            "member_count_exact": summary.member_count_exact}


def team_member_json(member: TeamMember) -> dict[str, Any]:
    return {"user_id": member.user_id, "userName": member.user_name, "email": member.email, "active": member.active,
            "team_role": member.team_role, "source": member.source,
            "grants": [{"role": g.role, "source": g.source, "group_id": g.group_id} for g in member.grants]}


@bp.get("/orgs/<org_ref>/teams")
@authenticated(scope=DIRECTORY_READ)
def list_teams(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    window = page_window()
    with database().reading() as session:
        page = directory.team_page(session, g.actor, org_id, limit=window.limit, after=window.after)
    return jsonify({"teams": [summary_json(t) for t in page.teams], "next": cursor(page.next)})


@bp.get("/orgs/<org_ref>/teams/<team_id>")
@authenticated(scope=DIRECTORY_READ)
def get_team(org_ref: str, team_id: str) -> Response:
    """The team, the caller's role in it, its member count, and a page of its members (?limit=&after=)."""
    org_id = caller_org_id(org_ref)
    limit, after = page_limit(), one_arg("after", "")  # the `next` of the previous page, checked by the domain
    with database().reading() as session:
        found = directory.get_team_detail(session, g.actor, org_id, team_id, limit=limit, after=after)
    return jsonify({**summary_json(found.summary), "members": [team_member_json(m) for m in found.members],
                    "next": found.next})


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


def _confirmation() -> str:
    data = json_body("confirm")
    if "confirm" not in data:
        raise InvalidValue("confirm is required: the exact name of what is deleted", field="confirm")
    return text(data, "confirm")


@bp.delete("/orgs/<org_ref>/teams/<team_id>")
@authenticated(scope=ADMIN)
def delete_team(org_ref: str, team_id: str) -> tuple[str, int]:
    """Delete a team; the body `{"confirm": "<team name>"}` must name it exactly."""
    org_id = caller_org_id(org_ref)
    run(database(), g.actor, team_deletion.delete_team, org_id, team_id, confirm=_confirmation())
    return "", 204


def _member_answer(org_id: str, team_id: str, user_id: str) -> Response:
    with database().reading() as session:
        found = directory.get_team_member(session, g.actor, org_id, team_id, user_id)
    return jsonify(team_member_json(found))


def _team_role(data: dict[str, Any]) -> str:
    if "role" not in data:
        raise InvalidValue("role is required: viewer, member or admin", field="role")
    return role(data) or ""


@bp.post("/orgs/<org_ref>/teams/<team_id>/members")
@authenticated(scope=ADMIN)
def add_team_member(org_ref: str, team_id: str) -> tuple[Response, int]:
    """Add an existing member of the org to the team (a manual grant of `role`, default member)."""
    org_id, data = caller_org_id(org_ref), json_body("user_id", "role")
    user_id = text(data, "user_id")
    if not user_id:
        raise InvalidValue("user_id is required", field="user_id")
    run(database(), g.actor, teams.add_team_member, org_id, team_id, user_id, role(data) or "member")
    return _member_answer(org_id, team_id, user_id), 201


@bp.patch("/orgs/<org_ref>/teams/<team_id>/members/<user_id>")
@authenticated(scope=ADMIN)
def change_team_role(org_ref: str, team_id: str, user_id: str) -> Response:
    org_id = caller_org_id(org_ref)
    run(database(), g.actor, teams.change_team_role, org_id, team_id, user_id, _team_role(json_body("role")))
    return _member_answer(org_id, team_id, user_id)


@bp.get("/orgs/<org_ref>/teams/<team_id>/members/<user_id>/removal")
@authenticated(scope=ADMIN)
def removal_preview(org_ref: str, team_id: str, user_id: str) -> Response:
    """What removing the member from the team would revoke: its keys for the team, by prefix."""
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        prefixes = teams.removal_preview(session, g.actor, org_id, team_id, user_id)
    return jsonify({"team_id": team_id, "user_id": user_id, "keys_to_revoke": len(prefixes), "key_prefixes": prefixes})


@bp.delete("/orgs/<org_ref>/teams/<team_id>/members/<user_id>")
@authenticated(scope=ADMIN)
def remove_team_member(org_ref: str, team_id: str, user_id: str) -> tuple[str, int]:
    run(database(), g.actor, teams.remove_team_member, caller_org_id(org_ref), team_id, user_id)
    return "", 204


_ROLE = {"type": "string", "enum": ["viewer", "member", "admin", "developer"]}
_NULLABLE = {"type": ["string", "null"]}
_SUMMARY = {"id": {"type": "string"}, "name": {"type": "string"}, "default": {"type": "boolean"},
            "created": {"type": "string"}, "your_role": {"type": ["string", "null"]},
            "member_count": {"type": "integer"}, "member_count_exact": {"type": "boolean"}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "TeamSummary": {"type": "object", "required": list(_SUMMARY), "properties": _SUMMARY},
    "TeamList": {"type": "object", "required": ["teams", "next"], "properties": {
        "teams": {"type": "array", "items": {"$ref": "#/components/schemas/TeamSummary"}}, "next": _NULLABLE}},
    "TeamMember": {"type": "object", "required": ["user_id", "team_role", "source", "grants"], "properties": {
        "user_id": {"type": "string"}, "userName": {"type": "string"}, "email": _NULLABLE,
        "active": {"type": "boolean"}, "team_role": {"type": "string"}, "source": {"type": "string"},
        "grants": {"type": "array", "items": {"type": "object", "properties": {
            "role": {"type": "string"}, "source": {"type": "string"}, "group_id": _NULLABLE}}}}},
    "TeamDetail": {"type": "object", "required": [*_SUMMARY, "members", "next"], "properties": {
        **_SUMMARY, "members": {"type": "array", "items": {"$ref": "#/components/schemas/TeamMember"}},
        "next": _NULLABLE}},
    "NewTeamMember": {"type": "object", "additionalProperties": False, "required": ["user_id"], "properties": {
        "user_id": {"type": "string", "minLength": 1}, "role": _ROLE}},
    "TeamRole": {"type": "object", "additionalProperties": False, "required": ["role"], "properties": {
        "role": _ROLE}},
    "Confirmation": {"type": "object", "additionalProperties": False, "required": ["confirm"], "properties": {
        "confirm": {"type": "string", "description": "the exact name of the team, or slug of the org, deleted"}}},
    "TeamRemovalPreview": {"type": "object", "properties": {
        "team_id": {"type": "string"}, "user_id": {"type": "string"}, "keys_to_revoke": {"type": "integer"},
        "key_prefixes": {"type": "array", "items": {"type": "string"}}}},
}
_PAGE = [LIMIT_QUERY,
         ("after", {"type": "string"}, "`next` of the previous page")]
_UUID = "^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$"
_MEMBER_PAGE = [_PAGE[0], ("after", {"type": "string", "pattern": _UUID}, "`next` of the previous page (a user id)")]


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    team, member = ("org", "team_id"), ("org", "team_id", "user_id")
    return {
        "/api/v1/orgs/{org}/teams": {
            "get": op("List teams, oldest first: each with your role in it and its member count (cursor pages)",
                      json_response(ref("TeamList")), params=("org",), query=_PAGE),
            "post": op("Create a team; a person who creates it becomes its admin", json_response(ref("Team")),
                       body="TeamName", params=("org",), status="201")},
        "/api/v1/orgs/{org}/teams/{team_id}": {
            "get": op("A team: your role in it, its member count, and a page of its members with their grants",
                      json_response(ref("TeamDetail")), params=team, query=_MEMBER_PAGE),
            "patch": op("Rename a team (its id stays)", json_response(ref("Team")), body="TeamName", params=team),
            "delete": op("Delete a team: `confirm` must be its name (its keys revoked, its mappings deleted)",
                         {"description": "done"}, body="Confirmation", params=team, status="204")},
        "/api/v1/orgs/{org}/teams/{team_id}/members": {
            "post": op("Add a member of the org to the team with a team role (default member)",
                       json_response(ref("TeamMember")), body="NewTeamMember", params=team, status="201")},
        "/api/v1/orgs/{org}/teams/{team_id}/members/{user_id}": {
            "patch": op("Change a member's team role", json_response(ref("TeamMember")), body="TeamRole",
                        params=member),
            "delete": op("Remove a member from the team (every grant in it); their keys for it are revoked",
                         {"description": "done"}, params=member, status="204")},
        "/api/v1/orgs/{org}/teams/{team_id}/members/{user_id}/removal": {
            "get": op("Preview a removal from the team: how many of the member's keys it would revoke",
                      json_response(ref("TeamRemovalPreview")), params=member)},
    }
