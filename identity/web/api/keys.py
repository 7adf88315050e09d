"""Admin API: API keys (and the gateway's whoami), SCIM bearer tokens and SCIM OAuth clients."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from identity import keys
from identity.errors import InvalidValue
from identity.paging import Position
from identity.service import run
from identity.web.api.common import (
    ADMIN,
    KEY,
    adopt,
    authenticated,
    caller_org_id,
    json_body,
    known_args,
    optional_text,
    page_window,
    paged,
    text,
    when,
)
from identity.web.context import database

bp = adopt(Blueprint("api_keys", __name__, url_prefix="/api/v1"))


@bp.get("/key")
@authenticated(scope=None, ways=(KEY,))
def whoami_key() -> Response:
    """Tell whom the presented key speaks for: the gateway's one call to verify a key (any scope)."""
    k = g.key
    return jsonify({"key_id": k.key_id, "org": {"id": k.org_id, "slug": k.org_slug}, "team_id": k.team_id,
                    "user": {"id": k.user_id, "userName": k.user_name}, "role": k.role, "team_role": k.team_role,
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


@bp.delete("/orgs/<org_ref>/api-keys/<key_id>")
@authenticated(scope=ADMIN)
def revoke_api_key(org_ref: str, key_id: str) -> tuple[str, int]:
    run(database(), g.actor, keys.revoke_api_key, caller_org_id(org_ref), key_id)
    return "", 204


@bp.post("/orgs/<org_ref>/scim-tokens")
@authenticated(scope=ADMIN)
def create_scim_token(org_ref: str) -> tuple[Response, int]:
    org_id = caller_org_id(org_ref)
    issued = run(database(), g.actor, keys.create_scim_token, org_id, name=text(json_body("name"), "name", "SCIM"))
    return jsonify({"id": issued.id, "prefix": issued.prefix, "token": issued.secret}), 201


@bp.delete("/orgs/<org_ref>/scim-tokens/<token_id>")
@authenticated(scope=ADMIN)
def revoke_scim_token(org_ref: str, token_id: str) -> tuple[str, int]:
    run(database(), g.actor, keys.revoke_scim_token, caller_org_id(org_ref), token_id)
    return "", 204


@bp.get("/orgs/<org_ref>/scim-tokens")
@authenticated(scope=ADMIN)
def list_scim_tokens(org_ref: str) -> Response:
    """List the org's SCIM bearer tokens: names, prefixes and times, never a secret."""
    org_id = caller_org_id(org_ref)
    known_args("limit", "after")
    window = page_window()
    with database().reading() as session:
        found, after = paged(keys.list_scim_tokens(session, g.actor, org_id, window), window,
                             lambda t: Position(t.created_at, t.id))
    return jsonify({"scim_tokens": [{"id": t.id, "name": t.name, "prefix": t.prefix, "created": when(t.created_at),
                                     "last_used": when(t.last_used_at), "revoked": when(t.revoked_at)}
                                    for t in found], "next": after})


@bp.get("/orgs/<org_ref>/scim-clients")
@authenticated(scope=ADMIN)
def list_scim_clients(org_ref: str) -> Response:
    """List the org's OAuth clients for SCIM: ids, names and times, never a secret."""
    org_id = caller_org_id(org_ref)
    known_args("limit", "after")
    window = page_window()
    with database().reading() as session:
        found, after = paged(keys.list_scim_clients(session, g.actor, org_id, window), window,
                             lambda c: Position(c.created_at, c.id))
    return jsonify({"scim_clients": [{"id": c.id, "client_id": c.client_id, "name": c.name,
                                      "created": when(c.created_at), "revoked": when(c.revoked_at)}
                                     for c in found], "next": after})


@bp.delete("/orgs/<org_ref>/scim-clients/<client_id>")
@authenticated(scope=ADMIN)
def revoke_scim_client(org_ref: str, client_id: str) -> tuple[str, int]:
    """Revoke an OAuth client (by id or client_id): its access tokens are refused from the next request."""
    run(database(), g.actor, keys.revoke_scim_client, caller_org_id(org_ref), client_id)
    return "", 204
