"""Admin API: the org's life (transfer ownership, delete), its seat ledger, and group mappings edited in place.

Deleting an org answers 204 and, from then on, every credential it had answers 401 (keys, SCIM
tokens, OAuth clients: all revoked in the same transaction) and its sign-in pages 404.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import charges, directory, mappings, org_lifecycle
from identity.charges import ChargeEntry
from identity.directory import MappingEntry
from identity.errors import InvalidValue
from identity.service import run
from identity.web.api.common import ADMIN, adopt, authenticated, caller_org_id, json_body, text
from identity.web.api.members import member_json
from identity.web.api.query import LIMIT_QUERY, cursor, page_window
from identity.web.api.settings import MAPPING_FIELDS, mapping_json
from identity.web.context import database

bp = adopt(Blueprint("api_org", __name__, url_prefix="/api/v1"))


def _required_text(data: dict[str, Any], name: str, what: str) -> str:
    if name not in data:
        raise InvalidValue(f"{name} is required: {what}", field=name)
    return text(data, name)


@bp.post("/orgs/<org_ref>/transfer-ownership")
@authenticated(scope=ADMIN)
def transfer_ownership(org_ref: str) -> Response:
    """Make an active member the owner and the caller an admin, in one step (owner only)."""
    org_id = caller_org_id(org_ref)
    user_id = _required_text(json_body("user_id"), "user_id", "the id of the active member who becomes owner")
    new_owner = run(database(), g.actor, org_lifecycle.transfer_ownership, org_id, user_id)
    with database().reading() as session:
        return jsonify({"owner": member_json(directory.Member.of(session, new_owner))})


@bp.delete("/orgs/<org_ref>")
@authenticated(scope=ADMIN)
def delete_org(org_ref: str) -> tuple[str, int]:
    """Delete the org (owner only); the body `{"confirm": "<slug>"}` must name it."""
    org_id = caller_org_id(org_ref)
    confirm = _required_text(json_body("confirm"), "confirm", "the org's slug")
    run(database(), g.actor, org_lifecycle.delete_org, org_id, confirm=confirm)
    return "", 204


def charge_json(charge: ChargeEntry) -> dict[str, Any]:
    return {"id": charge.id, "kind": charge.kind, "amount_cents": charge.amount_cents, "seats": charge.seats,
            "unit_price_cents": charge.unit_price_cents,
            "cause": {"user_id": charge.user_id, "actor_type": charge.actor_type, "actor_id": charge.actor_id},
            "cycle": {"start": charge.cycle_start.isoformat(), "end": charge.cycle_end.isoformat()},
            "created": charge.created.isoformat()}


@bp.get("/orgs/<org_ref>/seat-charges")
@authenticated(scope=ADMIN)
def seat_charges(org_ref: str) -> Response:
    """The seat ledger, newest first (cursor pages), and the current cycle's totals."""
    org_id = caller_org_id(org_ref)
    window = page_window()
    with database().reading() as session:
        page = charges.seat_charges(session, g.actor, org_id, limit=window.limit, after=window.after)
    cycle = {**page.cycle, "cycle_start": page.cycle["cycle_start"].isoformat(),
             "cycle_end": page.cycle["cycle_end"].isoformat()}
    return jsonify({"charges": [charge_json(c) for c in page.charges], "next": cursor(page.next),
                    "current_cycle": cycle})


@bp.patch("/orgs/<org_ref>/group-mappings/<mapping_id>")
@authenticated(scope=ADMIN)
def update_mapping(org_ref: str, mapping_id: str) -> Response:
    """Edit a group mapping rule in place; it is re-applied to the matching groups' members at once."""
    org_id, data = caller_org_id(org_ref), json_body(*MAPPING_FIELDS)
    for name, value in data.items():
        if value is not None and not isinstance(value, str):
            raise InvalidValue(f"{name} must be a string or null", field=name)
    rule = run(database(), g.actor, mappings.update_mapping, org_id, mapping_id, dict(data))
    return jsonify(mapping_json(MappingEntry.of(rule)))


_TEXT, _NULLABLE, _INT = {"type": "string"}, {"type": ["string", "null"]}, {"type": "integer"}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "OwnershipTransfer": {"type": "object", "additionalProperties": False, "required": ["user_id"],
                          "properties": {"user_id": {"type": "string", "description": "an active member's id"}}},
    "NewOwner": {"type": "object", "required": ["owner"],
                 "properties": {"owner": {"$ref": "#/components/schemas/Member"}}},
    "SeatCharge": {"type": "object", "required": ["id", "kind", "amount_cents", "seats", "cause", "cycle"],
                   "properties": {
        "id": _TEXT, "kind": {"type": "string", "enum": ["seat_purchase", "seat_renewal"]}, "amount_cents": _INT,
        "seats": _INT, "unit_price_cents": _INT, "created": _TEXT,
        "cause": {"type": "object", "properties": {"user_id": _NULLABLE, "actor_type": _TEXT, "actor_id": _TEXT}},
        "cycle": {"type": "object", "properties": {"start": _TEXT, "end": _TEXT}}}},
    "SeatLedger": {"type": "object", "required": ["charges", "next", "current_cycle"], "properties": {
        "charges": {"type": "array", "items": {"$ref": "#/components/schemas/SeatCharge"}}, "next": _NULLABLE,
        "current_cycle": {"type": "object", "properties": {
            "cycle_start": _TEXT, "cycle_end": _TEXT, "charges": _INT, "seats_charged": _INT, "amount_cents": _INT,
            "seats": {"$ref": "#/components/schemas/Seats"}}}}},
    "GroupMappingChange": {"type": "object", "additionalProperties": False, "properties": {
        name: {"type": ["string", "null"], "description": "absent: unchanged; null: cleared"}
        for name in MAPPING_FIELDS}},
}


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    page = [LIMIT_QUERY,
            ("after", {"type": "string"}, "`next` of the previous page")]
    return {
        "/api/v1/orgs/{org}": {
            "delete": op("Delete the org (owner only; `confirm` must be its slug): members deprovisioned, keys, "
                         "tokens and OAuth clients revoked, seats freed, SSO removed; the audit log is kept",
                         {"description": "done"}, body="Confirmation", params=("org",), status="204")},
        "/api/v1/orgs/{org}/transfer-ownership": {
            "post": op("Transfer ownership to an active member in one step; the caller becomes admin (owner only)",
                       json_response(ref("NewOwner")), body="OwnershipTransfer", params=("org",))},
        "/api/v1/orgs/{org}/seat-charges": {
            "get": op("The seat ledger, newest first (cursor pages), with the current cycle's totals",
                      json_response(ref("SeatLedger")), params=("org",), query=page)},
        "/api/v1/orgs/{org}/group-mappings/{mapping_id}": {
            "patch": op("Edit a group mapping rule in place; re-applied to the matching groups' members",
                        json_response(ref("GroupMapping")), body="GroupMappingChange", params=("org", "mapping_id"))},
    }
