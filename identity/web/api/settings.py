"""Admin API: org settings, seats and group mappings (invitations: identity.web.api.invitations)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import directory, mappings, orgs
from identity.directory import MappingEntry
from identity.errors import InvalidValue
from identity.paging import Position
from identity.service import run
from identity.web.api.common import ADMIN, adopt, authenticated, caller_org_id, json_body
from identity.web.api.query import list_page
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
    return jsonify(orgs.readable_settings(g.actor, org))


def mapping_json(rule: MappingEntry) -> dict[str, Any]:
    """Render a group mapping rule as the admin API shows it."""
    return {name: getattr(rule, name) for name in ("id", *MAPPING_FIELDS)}


@bp.get("/orgs/<org_ref>/group-mappings")
@authenticated(scope=ADMIN)
def list_mappings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    return list_page("group_mappings", lambda session, window: directory.list_group_mappings(
        session, g.actor, org_id, window), mapping_json, lambda m: Position(m.created, m.id))


@bp.post("/orgs/<org_ref>/group-mappings")
@authenticated(scope=ADMIN)
def create_mapping(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body(*MAPPING_FIELDS)
    fields = {k: data.get(k) for k in MAPPING_FIELDS}
    if not all(v is None or isinstance(v, str) for v in fields.values()):
        raise InvalidValue("group mapping fields are strings")
    rule = run(database(), g.actor, mappings.create_mapping, org_id, **fields)
    return jsonify(mapping_json(MappingEntry.of(rule))), 201


@bp.delete("/orgs/<org_ref>/group-mappings/<mapping_id>")
@authenticated(scope=ADMIN)
def delete_mapping(org_ref: str, mapping_id: str) -> tuple[str, int]:
    run(database(), g.actor, mappings.delete_mapping, caller_org_id(org_ref), mapping_id)
    return "", 204
