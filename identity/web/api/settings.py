"""Admin API: org settings, seats, invitations (sending, listing, accepting) and group mappings."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from audit import Actor
from identity import directory, groups, invitations, members, orgs
from identity.directory import InvitationEntry, MappingEntry
from identity.errors import InvalidValue
from identity.paging import Position
from identity.service import run
from identity.vocabulary import Role
from identity.web.api.common import (
    ADMIN,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    known_args,
    optional_text,
    page_window,
    paged,
    request_actor,
    role,
    text,
)
from identity.web.api.members import member_json
from identity.web.context import database

bp = adopt(Blueprint("api_settings", __name__, url_prefix="/api/v1"))
MAPPING_FIELDS = ("group_external_id", "group_display_name", "team_id", "team_role", "org_role")


@bp.get("/orgs/<org_ref>/seats")
@authenticated(scope=ADMIN)
def seat_preview(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        return jsonify(directory.seat_preview(session, g.actor, org_id).as_dict())


@bp.get("/orgs/<org_ref>/settings")
@authenticated(scope=ADMIN)
def get_settings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        return jsonify(directory.org_settings(session, g.actor, org_id))


@bp.patch("/orgs/<org_ref>/settings")
@authenticated(scope=ADMIN)
def change_settings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    org = run(database(), g.actor, orgs.update_settings, org_id, json_body(*orgs.SETTINGS))
    return jsonify({name: getattr(org, name) for name in orgs.SETTINGS})


def invitation_json(invitation: InvitationEntry) -> dict[str, Any]:
    """Render an invitation as the admin API shows it."""
    return {"id": invitation.id, "email": invitation.email, "role": invitation.role, "team_id": invitation.team_id,
            "status": invitation.status, "expires_at": invitation.expires_at.isoformat()}


@bp.post("/orgs/<org_ref>/invitations")
@authenticated(scope=ADMIN)
def create_invitation(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("email", "role", "team_id")
    invited = run(database(), g.actor, members.invite_member, org_id, email=text(data, "email", ""),
                  role=role(data) or Role.MEMBER, team_id=optional_text(data, "team_id"))
    return jsonify({**invitation_json(invited.invitation), "token": invited.token,
                    "seats": invited.seats.as_dict()}), 201


@bp.get("/orgs/<org_ref>/invitations")
@authenticated(scope=ADMIN)
def list_invitations(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    known_args("limit", "after")
    window = page_window()
    with database().reading() as session:
        found, after = paged(directory.list_invitations(session, g.actor, org_id, window), window,
                             lambda i: Position(i.created, i.id))
    return jsonify({"invitations": [invitation_json(i) for i in found], "next": after})


def _invitation_token() -> tuple[str, Actor]:
    """Read the link token and its holder (recording its expiry first, in a transaction of its own)."""
    token = text(json_body("token"), "token", "")
    with database().transaction() as session:
        holder = members.invitation_holder(session, token)
    return token, request_actor(holder)


@bp.post("/invitations/accept")
def accept_invitation() -> tuple[Response, int]:
    """Accept with the link's token (the token is the credential; no API key)."""
    token, actor = _invitation_token()
    return jsonify(member_json(run(database(), actor, members.accept_invitation, token))), 201


@bp.post("/invitations/decline")
def decline_invitation() -> tuple[str, int]:
    token, actor = _invitation_token()
    run(database(), actor, invitations.decline, token)
    return "", 204


def mapping_json(rule: MappingEntry) -> dict[str, Any]:
    """Render a group mapping rule as the admin API shows it."""
    return {name: getattr(rule, name) for name in ("id", *MAPPING_FIELDS)}


@bp.get("/orgs/<org_ref>/group-mappings")
@authenticated(scope=ADMIN)
def list_mappings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    known_args("limit", "after")
    window = page_window()
    with database().reading() as session:
        found, after = paged(directory.list_group_mappings(session, g.actor, org_id, window), window,
                             lambda m: Position(m.created, m.id))
    return jsonify({"group_mappings": [mapping_json(m) for m in found], "next": after})


@bp.post("/orgs/<org_ref>/group-mappings")
@authenticated(scope=ADMIN)
def create_mapping(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body(*MAPPING_FIELDS)
    fields = {k: data.get(k) for k in MAPPING_FIELDS}
    if not all(v is None or isinstance(v, str) for v in fields.values()):
        raise InvalidValue("group mapping fields are strings")
    rule = run(database(), g.actor, groups.create_mapping, org_id, **fields)
    return jsonify(mapping_json(MappingEntry.of(rule))), 201


@bp.delete("/orgs/<org_ref>/group-mappings/<mapping_id>")
@authenticated(scope=ADMIN)
def delete_mapping(org_ref: str, mapping_id: str) -> tuple[str, int]:
    run(database(), g.actor, groups.delete_mapping, caller_org_id(org_ref), mapping_id)
    return "", 204
