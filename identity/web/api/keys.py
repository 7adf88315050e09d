"""Admin API: API keys (and the gateway's whoami), SCIM bearer tokens and SCIM OAuth clients."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify

from identity import key_list, keys, scim_credentials
from identity.errors import InvalidValue
from identity.paging import Position
from identity.roles import ROLES
from identity.service import run
from identity.web.api.common import (
    ADMIN,
    KEY,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    optional_text,
    text,
    when,
)
from identity.web.api.query import LIMIT_QUERY, after_id, list_page, one_arg, page_limit
from identity.web.context import database

bp = adopt(Blueprint("api_keys", __name__, url_prefix="/api/v1"))


@bp.get("/key")
@authenticated(scope=None, ways=(KEY,))
def whoami_key() -> Response:
    """Tell whom the presented key speaks for: the gateway's one call to verify a key (any scope)."""
    k = g.key
    return jsonify({"key_id": k.key_id, "org": {"id": k.org_id, "slug": k.org_slug}, "team_id": k.team_id,
                    "user": None if k.user_id is None else {"id": k.user_id, "userName": k.user_name},
                    "role": k.role, "team_role": k.team_role,
                    "scopes": list(k.scopes)})


@bp.post("/orgs/<org_ref>/api-keys")
@authenticated(scope=ADMIN)
def create_api_key(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("name", "team_id", "user_id", "scopes")
    scopes = data.get("scopes", ["inference"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidValue("scopes must be a list of strings", field="scopes")
    team_id = optional_text(data, "team_id") or g.key.team_id  # a session's: the member's default team
    if team_id is None:
        raise InvalidValue("team_id is required: you are in no team", field="team_id")
    issued = run(database(), g.actor, keys.create_api_key, org_id,
                 user_id=optional_text(data, "user_id") or g.key.user_id,
                 team_id=team_id, name=text(data, "name"), scopes=scopes)
    return jsonify({"id": issued.id, "prefix": issued.prefix, "key": issued.secret}), 201


@bp.post("/orgs/<org_ref>/service-keys")
@authenticated(scope=ADMIN)
def create_service_key(org_ref: str) -> tuple[Response, int]:
    """Make a team service key (owners and admins): it belongs to the team, not to a person."""
    org_id, data = caller_org_id(org_ref), json_body("name", "team_id", "scopes")
    issued = run(database(), g.actor, keys.create_service_key, org_id, team_id=text(data, "team_id"),
                 name=text(data, "name"), scopes=_scopes(data))
    return jsonify({"id": issued.id, "prefix": issued.prefix, "key": issued.secret, "kind": "service"}), 201


def _scopes(data: dict[str, Any]) -> list[str]:
    scopes = data.get("scopes", ["inference"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidValue("scopes must be a list of strings", field="scopes")
    return scopes


@bp.get("/orgs/<org_ref>/api-keys")
@authenticated(scope=ADMIN)
def list_api_keys(org_ref: str) -> Response:
    """List keys by id in keyset pages: an admin's or owner's list holds every key, a member's their own.
    Team service keys are shown apart, under `service_keys`."""
    org_id = caller_org_id(org_ref)
    limit = page_limit()
    with database().reading() as session:
        page = key_list.list_api_keys(session, g.actor, org_id, limit=limit, after=after_id(),
                                  kind=one_arg("kind"))
        rows = [_key_entry(entry) for entry in page.entries]
    return jsonify({"keys": [r for r in rows if r["kind"] == "personal"],
                    "service_keys": [r for r in rows if r["kind"] == "service"], "next": page.next})


def _key_entry(entry: key_list.KeyEntry) -> dict[str, Any]:
    k = entry.key
    return {"id": k.id, "prefix": k.prefix, "name": k.name, "kind": "personal" if k.user_id else "service",
            "team": {"id": k.team_id, "name": entry.team_name},
            "holder": {"id": k.user_id, "userName": entry.holder} if k.user_id else None,
            "scopes": list(k.scopes), "created": when(k.created_at), "created_by": _creator(k),
            "last_used": when(k.last_used_at), "state": entry.state, "expires": when(k.expires_at),
            "rotated_to": k.rotated_to, "role_cap": k.role_cap, "spend": _spend(entry)}


def _spend(entry: key_list.KeyEntry) -> dict[str, Any] | None:
    """The key's spend this period and the spend refusal the key check would answer for it now."""
    found, refused = entry.spend, entry.refused
    if found is None:
        return None
    return {"period_spend_micros": found.spend_micros, "refusal": refused.refusal if refused else None,
            "scope": refused.scope if refused else None,
            "resets_at": when(found.resets_at) if refused else None}


def _creator(row: Any) -> dict[str, Any] | None:
    if row.created_by_type is None:
        return None  # made before creators were recorded
    return {"type": row.created_by_type, "id": row.created_by_id, "display": row.created_by}


@bp.post("/orgs/<org_ref>/api-keys/<key_id>/rotate")
@authenticated(scope=ADMIN)
def rotate_api_key(org_ref: str, key_id: str) -> tuple[Response, int]:
    """Make a key's successor (shown once); the old secret works for `grace_seconds` more, then `expired`."""
    org_id, data = caller_org_id(org_ref), json_body("grace_seconds")
    grace = data.get("grace_seconds")
    if isinstance(grace, float) and grace.is_integer():
        grace = int(grace)  # 60.0 is the JSON integer 60
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise InvalidValue("grace_seconds must be a whole number of seconds", field="grace_seconds")
    issued = run(database(), g.actor, keys.rotate_api_key, org_id, key_id, grace_seconds=grace)
    return jsonify({"id": issued.id, "prefix": issued.prefix, "key": issued.secret, "rotated_from": key_id}), 201


@bp.delete("/orgs/<org_ref>/api-keys/<key_id>")
@authenticated(scope=ADMIN)
def revoke_api_key(org_ref: str, key_id: str) -> tuple[str, int]:
    run(database(), g.actor, keys.revoke_api_key, caller_org_id(org_ref), key_id)
    return "", 204


@bp.post("/orgs/<org_ref>/scim-tokens")
@authenticated(scope=ADMIN)
def create_scim_token(org_ref: str) -> tuple[Response, int]:
    org_id = caller_org_id(org_ref)
    issued = run(database(), g.actor, scim_credentials.create_scim_token, org_id,
                 name=text(json_body("name"), "name", "SCIM"))
    return jsonify({"id": issued.id, "prefix": issued.prefix, "token": issued.secret}), 201


@bp.delete("/orgs/<org_ref>/scim-tokens/<token_id>")
@authenticated(scope=ADMIN)
def revoke_scim_token(org_ref: str, token_id: str) -> tuple[str, int]:
    run(database(), g.actor, scim_credentials.revoke_scim_token, caller_org_id(org_ref), token_id)
    return "", 204


@bp.get("/orgs/<org_ref>/scim-tokens")
@authenticated(scope=ADMIN)
def list_scim_tokens(org_ref: str) -> Response:
    """List the org's SCIM bearer tokens: names, prefixes and times, never a secret."""
    org_id = caller_org_id(org_ref)
    return list_page("scim_tokens", lambda session, window: scim_credentials.list_scim_tokens(
        session, g.actor, org_id, window), lambda t: {
            "id": t.id, "name": t.name, "prefix": t.prefix, "created": when(t.created_at), "created_by": _creator(t),
            "last_used": when(t.last_used_at), "revoked": when(t.revoked_at)}, _by_creation)


@bp.get("/orgs/<org_ref>/scim-clients")
@authenticated(scope=ADMIN)
def list_scim_clients(org_ref: str) -> Response:
    """List the org's OAuth clients for SCIM: ids, names and times, never a secret."""
    org_id = caller_org_id(org_ref)
    return list_page("scim_clients", lambda session, window: scim_credentials.list_scim_clients(
        session, g.actor, org_id, window), lambda c: {
            "id": c.id, "client_id": c.client_id, "name": c.name, "created": when(c.created_at),
            "created_by": _creator(c), "last_used": when(c.last_used_at), "revoked": when(c.revoked_at)}, _by_creation)


def _by_creation(row: Any) -> Position:
    return Position(row.created_at, row.id)


@bp.delete("/orgs/<org_ref>/scim-clients/<client_id>")
@authenticated(scope=ADMIN)
def revoke_scim_client(org_ref: str, client_id: str) -> tuple[str, int]:
    """Revoke an OAuth client (by id or client_id): its access tokens are refused from the next request."""
    run(database(), g.actor, scim_credentials.revoke_scim_client, caller_org_id(org_ref), client_id)
    return "", 204


CREATOR = {"type": ["object", "null"], "description": "who made it (null: made before creators were recorded)",
           "properties": {"type": {"type": "string"}, "id": {"type": ["string", "null"]},
                          "display": {"type": ["string", "null"]}}}
KEY_ENTRY = {"type": "object", "properties": {
    "id": {"type": "string"}, "prefix": {"type": "string"}, "name": {"type": "string"},
    "kind": {"type": "string", "enum": ["personal", "service"]}, "team": {"type": "object"},
    "holder": {"type": ["object", "null"]}, "scopes": {"type": "array", "items": {"type": "string"}},
    "created": {"type": "string"}, "created_by": CREATOR, "last_used": {"type": ["string", "null"]},
    "state": {"type": "string", "enum": ["active", "rotating", "expired", "blocked", "revoked"]},
    "expires": {"type": ["string", "null"]}, "rotated_to": {"type": ["string", "null"]},
    "role_cap": {"type": ["string", "null"], "enum": [*ROLES, None],
                 "description": "made (or rotated) for its holder by someone else: the holder's role then, above "
                 "which the key never acts, whatever the holder's role now; null: no cap"},
    "spend": {"type": ["object", "null"], "description": "this billing period: period_spend_micros, and the spend "
              "refusal the key check answers now for a usable key (refusal: balance_exhausted, "
              "spending_limit_reached or null; scope: team, key or member; resets_at: the period's end)"}}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "ApiKeyList": {"type": "object", "properties": {
        "keys": {"type": "array", "items": KEY_ENTRY}, "service_keys": {"type": "array", "items": KEY_ENTRY},
        "next": {"type": ["string", "null"]}}},
    "Rotation": {"type": "object", "additionalProperties": False, "properties": {
        "grace_seconds": {"type": "integer", "minimum": 0, "maximum": int(keys.MAX_GRACE.total_seconds()),
                          "description": f"default {int(keys.DEFAULT_GRACE.total_seconds())}"}}},
    "NewServiceKey": {"type": "object", "additionalProperties": False, "required": ["team_id"], "properties": {
        "name": {"type": "string"}, "team_id": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": sorted(keys.SERVICE_KEY_SCOPES)}}}},
    "KeyCheckRequest": {"type": "object", "additionalProperties": False, "required": ["key"],
                        "properties": {"key": {"type": "string"}}},
    "KeyCheck": {"type": "object", "required": ["valid"], "properties": {
        "valid": {"type": "boolean"},
        "reason": {"type": "string", "enum": ["unknown", "revoked", "blocked", "expired", "balance_exhausted",
                                              "spending_limit_reached"]},
        "resets_at": {"type": "string", "description": "a spend refusal: when the billing period turns"},
        "scope": {"type": "string", "enum": ["team", "key", "member"]},
        "budget": {"type": "object", "description": "the key's team wallet: balance_micros, remaining_micros, "
                   "discount_percent, limits [{scope, limit_micros, spend_micros}], period {start, end}"},
        "key_id": {"type": "string"}, "kind": {"type": "string", "enum": ["personal", "service"]},
        "org": {"type": "object"}, "team_id": {"type": "string"}, "member": {"type": ["object", "null"]},
        "role": {"type": "string"}, "team_role": {"type": "string"},
        "scopes": {"type": "array", "items": {"type": "string"}}}},
}


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's new operations, built with the admin API document's own helpers."""
    org_key = ("org", "key_id")
    return {
        "/api/v1/orgs/{org}/api-keys": {
            "get": op("List API keys (keyset pages by id): all for owners and admins, your own otherwise; "
                      "team service keys apart", json_response(ref("ApiKeyList")), params=("org",),
                      query=[LIMIT_QUERY,
                             ("after", {"type": "string"}, "`next` of the previous page"),
                             ("kind", {"type": "string", "enum": ["personal", "service"]}, "only keys of this kind")]),
            "post": op("Create a team API key (shown once)", json_response(ref("NewSecret")), body="NewApiKey",
                       params=("org",), status="201")},
        "/api/v1/orgs/{org}/api-keys/{key_id}/rotate": {
            "post": op("Rotate a key: its successor's secret is shown once; the old one works for grace_seconds "
                       f"(default {int(keys.DEFAULT_GRACE.total_seconds())}, at most "
                       f"{int(keys.MAX_GRACE.total_seconds())}), then answers `expired`",
                       json_response(ref("NewSecret")), body="Rotation", params=org_key, status="201")},
        "/api/v1/orgs/{org}/service-keys": {
            "post": op("Create a team service key (owners and admins; shown once): it belongs to the team, and "
                       "deleting the team revokes it", json_response(ref("NewSecret")), body="NewServiceKey",
                       params=("org",), status="201")},
    }
