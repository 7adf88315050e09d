"""`/openapi.json`: the admin API's description (OpenAPI 3.1). A test keeps it in step with the routes.

Two ways in (identity.web.api.common): an API key (`apiKey`), or the signed-in browser session's
cookie (`session`), whose writes carry the `X-CSRF-Token` header given by `GET /api/v1/session`.
Every list pages with `limit` and `after` and answers the following page's cursor in `next`.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from identity.keys import SCOPES
from identity.web import cookies
from identity.web.api import audit_log, gateway, keys, org, sso, teams, usage, wallets
from identity.web.api import invitations as invitations_api
from identity.web.api.common import CSRF_HEADER, ROLES
from identity.web.api.query import LIMIT_QUERY
from identity.web.context import public_base_url

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


ERRORS = {code: {"description": text, "content": {"application/problem+json": {"schema": _ref("Problem")}}}
          for code, text in (("400", "invalid input, or a malformed cursor"),
                             ("401", "missing or invalid API key, or no live session"),
                             ("403", "not allowed, the seat cap is reached, or a cookie request from another site "
                                     "or a cookie write without the session's X-CSRF-Token (code csrf_refused)"), ("404", "no such resource in your org"),
                             ("409", "conflict: duplicate name, or the last owner"), ("413", "body too large"),
                             ("503", "the request conflicted with another made at the same time (a database "
                                     "deadlock or lock), or met a database connection that had just ended, and "
                                     "changed nothing (code conflict_retry): send it again after Retry-After "
                                     "seconds"),
                             ("500", "an internal error naming its request_id; or the database connection was lost "
                                     "while the change was being committed, so it may have been made (code "
                                     "outcome_unknown): read it back before sending the request again"))}
ORG = {"name": "org", "in": "path", "required": True, "schema": {"type": "string"}, "description": "org id or slug"}


def _op(summary: str, ok: dict[str, Any], *, body: str | None = None, params: tuple[str, ...] = (),
        status: str = "200", auth: bool = True,
        query: tuple[tuple[str, dict[str, Any], str], ...] | list[Any] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [ORG] * ("org" in params) + [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params if p != "org"] + [
            {"name": q, "in": "query", "required": False, "schema": schema, "description": text}
            for q, schema, text in query],
        "responses": {status: ok, **ERRORS},
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
    if not auth:
        operation["security"] = []
    return operation


NO_CONTENT = {"description": "done"}
ORG_ONLY = ("org",)
# Keyset pages: every list takes these and answers `next`, the `after` of the following page (null at the end).
PAGING = [LIMIT_QUERY,
          ("after", {"type": "string"}, "`next` of the previous page (opaque)")]
NEXT = {"next": {"type": ["string", "null"], "description": "`after` of the following page; null at the end"}}


def _page(items: str, item: dict[str, Any] | None = None) -> dict[str, Any]:
    """A list's answer: its items under `items` and the `next` cursor."""
    return _json({"type": "object", "required": [items, "next"],
                  "properties": {items: {"type": "array", "items": item or {"type": "object"}}, **NEXT}})


PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/key": {"get": {**_op("Whom the presented key speaks for (the gateway's verification call)",
                                  _json(_ref("KeyIdentity"))), "security": [{"apiKey": []}]}},
    "/api/v1/session": {"get": {**_op("The signed-in browser session: user, org, role, and the CSRF token its "
                                      "cookie writes send in X-CSRF-Token", _json(_ref("Session"))),
                                "security": [{"session": []}]}},
    "/api/v1/orgs/{org}/seats": {"get": _op("Seat preview: included, purchased, used, free, next seat's cost", _json(_ref("Seats")), params=ORG_ONLY)},
    "/api/v1/orgs/{org}/members": {
        "get": _op("List members (keyset pages: ?limit=&after=)", _page("members", _ref("Member")), params=ORG_ONLY,
                   query=PAGING),
        "post": _op("Add a member (takes a seat)", _json(_ref("Member")), body="NewMember", params=ORG_ONLY, status="201"),
    },
    "/api/v1/orgs/{org}/members/{user_id}": {
        "patch": _op("Change a member's role or active state", _json(_ref("Member")), body="MemberChange", params=("org", "user_id")),
        "delete": _op("Remove a member (keys revoked, seat freed)", NO_CONTENT, params=("org", "user_id"), status="204"),
    },
    "/api/v1/orgs/{org}/settings": {
        "get": _op("Org settings: those the caller may read (billing and IdP trust: owners and admins)",
                   _json(_ref("Settings")), params=ORG_ONLY),
        "patch": _op("Change org settings", _json(_ref("Settings")), body="Settings", params=ORG_ONLY),
    },
    "/api/v1/orgs/{org}/group-mappings": {
        "get": _op("List group mapping rules, oldest first (keyset pages; one granting owner: owners and admins)",
                   _page("group_mappings", _ref("GroupMapping")),
                   params=ORG_ONLY, query=PAGING),
        "post": _op("Map an IdP group (by immutable id or name) to a team and role; applied at once",
                    _json(_ref("GroupMapping")), body="NewGroupMapping", params=ORG_ONLY, status="201"),
    },
    "/api/v1/orgs/{org}/group-mappings/{mapping_id}": {
        "delete": _op("Delete a group mapping rule", NO_CONTENT, params=("org", "mapping_id"), status="204")},
    "/api/v1/orgs/{org}/api-keys": {"post": _op("Create a team API key (shown once)", _json(_ref("NewSecret")),
                                                body="NewApiKey", params=ORG_ONLY, status="201")},
    "/api/v1/orgs/{org}/api-keys/{key_id}": {"delete": _op("Revoke an API key", NO_CONTENT, params=("org", "key_id"), status="204")},
    "/api/v1/orgs/{org}/scim-tokens": {
        "get": _op("List SCIM bearer tokens (never their secrets; owners and admins)",
                   _json(_ref("ScimTokenList")), params=ORG_ONLY, query=PAGING),
        "post": _op("Create a SCIM bearer token (shown once)", _json(_ref("NewSecret")),
                    body="Name", params=ORG_ONLY, status="201")},
    "/api/v1/orgs/{org}/scim-tokens/{token_id}": {"delete": _op("Revoke a SCIM token", NO_CONTENT, params=("org", "token_id"), status="204")},
    "/api/v1/orgs/{org}/scim-clients": {
        "get": _op("List OAuth clients for SCIM (never their secrets; owners and admins)",
                   _json(_ref("ScimClientList")), params=ORG_ONLY, query=PAGING)},
    "/api/v1/orgs/{org}/scim-clients/{client_id}": {
        "delete": _op("Revoke an OAuth client for SCIM (by id or client_id); its access tokens stop at once",
                      NO_CONTENT, params=("org", "client_id"), status="204")},
}

ROLE = {"type": "string", "enum": list(ROLES)}
OPTIONAL_ROLE = {"type": ["string", "null"], "enum": [*ROLE["enum"], None],
                 "description": "null or absent: the org's default role"}
DEFAULT_TEAM = {"type": ["string", "null"], "description": "null or absent: the default team (for a key or an "
                "invitation, the calling key's team)"}
SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["status", "code", "detail"], "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string"}, "request_id": {"type": ["string", "null"]}}},
    "Session": {"type": "object", "required": ["user", "org", "role", "csrf_token"], "properties": {
        "user": {"type": "object", "properties": {"id": {"type": "string"}, "userName": {"type": "string"}}},
        "org": {"type": "object", "properties": {"id": {"type": "string"}, "slug": {"type": "string"}}},
        "role": ROLE, "team_id": {"type": ["string", "null"], "description": "the member's default team"},
        "csrf_token": {"type": "string", "description": f"send it in {CSRF_HEADER} on every write made with the "
                       "session cookie; it is bound to this session"}}},
    "KeyIdentity": {"type": "object", "properties": {
        "key_id": {"type": "string"}, "org": {"type": "object"}, "team_id": {"type": "string"},
        "user": {"type": ["object", "null"], "description": "null for a team service key (its team's, no member's)"},
        "role": ROLE, "team_role": ROLE, "scopes": {"type": "array", "items": {"type": "string"}}}},
    "Seats": {"type": "object", "properties": {k: {"type": ["integer", "null"]} for k in (
        "included", "purchased", "used", "free", "max_seats", "next_seat_cents", "seat_price_cents")}
        | {"cycle_start": {"type": "string"}, "cycle_end": {"type": "string"},
           "pending_invitations": {"type": "integer"}, "free_after_invitations": {"type": "integer"},
           "next_invitation_cents": {"type": "integer"},
           "cap_left": {"type": ["integer", "null"],
                        "description": "members max_seats still lets in once pending invitations are accepted"}}},
    "Member": {"type": "object", "properties": {
        "id": {"type": "string"}, "userName": {"type": "string"}, "email": {"type": ["string", "null"]},
        "active": {"type": "boolean"}, "role": ROLE, "teams": {"type": "object"}, "source": {"type": "string"}}},
    "NewMember": {"type": "object", "required": ["email"], "properties": {
        "email": {"type": "string"}, "role": OPTIONAL_ROLE, "team_id": DEFAULT_TEAM}},
    "MemberChange": {"type": "object", "properties": {"role": ROLE, "active": {"type": "boolean"}}},
    "Team": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                                              "default": {"type": "boolean"}, "created": {"type": "string"}}},
    "TeamName": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "Name": {"type": "object", "properties": {"name": {"type": "string"}}},
    "Settings": {"type": "object", "properties": {
        "included_seats": {"type": "integer", "minimum": 0}, "seat_price_cents": {"type": "integer", "minimum": 0},
        "max_seats": {"type": ["integer", "null"], "minimum": 1},
        "default_role": {"type": "string", "enum": ["viewer", "member", "admin", "developer"],
                         "description": "`developer` is accepted as `member`, and answered as `member`"},
        "group_sync": {"type": "string", "enum": ["mirror", "mapped"]}, "idp_may_grant_owner": {"type": "boolean"},
        "require_sso": {"type": "boolean"}, "audit_retention_days": {"type": "integer", "minimum": 1}}},
    "NewInvitation": {"type": "object", "required": ["email"], "properties": {
        "email": {"type": "string", "maxLength": 320,
                  "description": "one address, name@domain: no display name, list, comment or whitespace (400)"},
        "role": OPTIONAL_ROLE, "team_id": DEFAULT_TEAM}},
    "Invitation": {"type": "object", "properties": {
        "id": {"type": "string"}, "email": {"type": "string"}, "role": ROLE, "team_id": {"type": "string"},
        "status": {"type": "string"}, "expires_at": {"type": "string"}, "token": {"type": "string"},
        "seats": _ref("Seats")}},
    "InvitationToken": {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
    "NewApiKey": {"type": "object", "properties": {
        "name": {"type": "string"}, "team_id": DEFAULT_TEAM,
        "user_id": {"type": ["string", "null"], "description": "null or absent: the key's own member"},
        "scopes": {"type": "array", "items": {"type": "string", "enum": sorted(SCOPES)}}}},
    "GroupMapping": {"type": "object", "properties": {
        "id": {"type": "string"}, "group_external_id": {"type": ["string", "null"]},
        "group_display_name": {"type": ["string", "null"]}, "team_id": {"type": ["string", "null"]},
        "team_role": {"type": ["string", "null"]}, "org_role": {"type": ["string", "null"]}}},
    "NewGroupMapping": {"type": "object", "properties": {name: {"type": ["string", "null"]} for name in (
        "group_external_id", "group_display_name", "team_id", "team_role", "org_role")}},
    "NewSecret": {"type": "object", "properties": {
        "id": {"type": "string"}, "prefix": {"type": "string"}, "key": {"type": "string"}, "token": {"type": "string"}}},
    "ScimTokenList": {"type": "object", "required": ["scim_tokens", "next"], "properties": {**NEXT, "scim_tokens": {
        "type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "prefix": {"type": "string"},
            "created": {"type": "string"}, "last_used": {"type": ["string", "null"]},
            "revoked": {"type": ["string", "null"]}, "created_by": {"type": ["object", "null"]}}}}}},
    "ScimClientList": {"type": "object", "required": ["scim_clients", "next"], "properties": {**NEXT, "scim_clients": {
        "type": "array", "items": {"type": "object", "additionalProperties": False, "properties": {
            "id": {"type": "string"}, "client_id": {"type": "string"}, "name": {"type": "string"},
            "created": {"type": "string"}, "revoked": {"type": ["string", "null"]},
            "created_by": {"type": ["object", "null"]}, "last_used": {"type": ["string", "null"]}}}}}},
}


# The audit log's and SSO's routes describe themselves beside their views.
PATHS.update(audit_log.OPENAPI_PATHS)
SCHEMAS.update(audit_log.OPENAPI_SCHEMAS)
PATHS.update(sso.openapi_paths(_op, _json, _ref))
SCHEMAS.update(sso.OPENAPI_SCHEMAS)
PATHS.update(teams.openapi_paths(_op, _json, _ref))
SCHEMAS.update(teams.OPENAPI_SCHEMAS)
for _path, _ops in org.openapi_paths(_op, _json, _ref).items():  # beside the group-mappings path's DELETE
    PATHS.setdefault(_path, {}).update(_ops)
SCHEMAS.update(org.OPENAPI_SCHEMAS)
PATHS.update(keys.openapi_paths(_op, _json, _ref) | gateway.openapi_paths(_op, _json, _ref))
SCHEMAS.update(keys.OPENAPI_SCHEMAS)
PATHS.update(invitations_api.openapi_paths(_op, _json, _ref))
SCHEMAS.update(invitations_api.OPENAPI_SCHEMAS)
PATHS.update(wallets.openapi_paths(_op, _json, _ref) | usage.openapi_paths(_op, _json, _ref))
SCHEMAS.update(wallets.OPENAPI_SCHEMAS | usage.OPENAPI_SCHEMAS)
# A write carried by the session cookie sends the session's CSRF token (a key's ignores it).
CSRF = {"name": CSRF_HEADER, "in": "header", "required": False, "schema": {"type": "string"},
        "description": "with the session cookie: csrf_token of GET /api/v1/session (refused 403 without it)"}
for _item in PATHS.values():
    for _method, _operation in _item.items():
        if _method in ("post", "put", "patch", "delete") and _operation.get("security") not in ([], [{"gateway": []}]):
            _operation["parameters"] = [*_operation["parameters"], CSRF]
# Request bodies: a member the API does not know is refused (400), not ignored.
for _name in ("NewMember", "MemberChange", "TeamName", "Name", "Settings", "NewInvitation", "InvitationToken",
              "NewApiKey", "NewGroupMapping"):
    SCHEMAS[_name]["additionalProperties"] = False


def query_parameters() -> dict[tuple[str, str], frozenset[str]]:
    """Return each operation's declared query parameters by (path, METHOD): what the admin API's
    `declared_query` lets through (the app factory puts it in the app), so that the document and
    the API refuse the same parameters."""
    return {(path, method.upper()): frozenset(p["name"] for p in operation["parameters"] if p["in"] == "query")
            for path, item in PATHS.items() for method, operation in item.items()}


def document() -> dict[str, Any]:
    """Return the OpenAPI document of the admin API."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "Identity provisioning admin API", "version": "1"},
        "security": [{"apiKey": []}, {"session": []}],
        "paths": PATHS,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "an API key: Authorization: Bearer <key>"},
            "gateway": {"type": "http", "scheme": "bearer", "description": (
                "the operator's gateway credential (`identity gateway credential create`): Bearer gw_...")},
            "session": {"type": "apiKey", "in": "cookie", "name": cookies.COOKIE, "description": (
                "the signed-in browser session (SAML sign-in or a one-time link); only from this service's own "
                f"origin, and a write also sends {CSRF_HEADER} (GET /api/v1/session). A key in the header wins.")}}},
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The document as served: its server is BASE_URL, so that a client generated from it calls the
    API where the operator serves it (under BASE_URL's path too), not at the root of whatever host
    the document was read from."""
    return jsonify({**document(), "servers": [{"url": public_base_url()}]})
