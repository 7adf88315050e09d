"""Admin API: the org's members (list, add, change role or active state, remove)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import directory, members, users
from identity.directory import Member
from identity.errors import InvalidValue
from identity.service import run
from identity.web.api.common import (
    ADMIN,
    DIRECTORY_READ,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    optional_text,
    role,
    text,
)
from identity.web.api.query import after_id, page_limit
from identity.web.context import database

bp = adopt(Blueprint("api_members", __name__, url_prefix="/api/v1"))


def member_json(member: Member) -> dict[str, Any]:
    """Render a member as the admin API shows it."""
    return {"id": member.id, "userName": member.user_name, "email": member.email, "active": member.active,
            "role": member.role, "teams": member.teams, "source": member.source}


@bp.get("/orgs/<org_ref>/members")
@authenticated(scope=DIRECTORY_READ)
def list_members(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    limit, after = page_limit(), after_id()
    with database().reading() as session:
        page = directory.list_members(session, g.actor, org_id, limit=limit, after=after)
    return jsonify({"members": [member_json(m) for m in page.members], "next": page.next})


@bp.post("/orgs/<org_ref>/members")
@authenticated(scope=ADMIN)
def add_member(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("email", "role", "team_id")
    member = run(database(), g.actor, members.add_member, org_id, email=text(data, "email", ""), role=role(data),
                 team_id=optional_text(data, "team_id"))
    return jsonify(member_json(member)), 201


@bp.patch("/orgs/<org_ref>/members/<user_id>")
@authenticated(scope=ADMIN)
def update_member(org_ref: str, user_id: str) -> Response:
    org_id, data = caller_org_id(org_ref), json_body("role", "active")
    new_role = role(data) if "role" in data else None
    if "active" in data and not isinstance(data["active"], bool):
        raise InvalidValue("active must be true or false", field="active")
    member = run(database(), g.actor, members.change_member, org_id, user_id, role=new_role,
                 active=data.get("active"))
    return jsonify(member_json(member))


@bp.delete("/orgs/<org_ref>/members/<user_id>")
@authenticated(scope=ADMIN)
def remove_member(org_ref: str, user_id: str) -> tuple[str, int]:
    run(database(), g.actor, users.delete_user, caller_org_id(org_ref), user_id)
    return "", 204
