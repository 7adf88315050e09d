"""The admin API under /api/v1: a thin adapter from HTTP+JSON to the domain services.

Authenticated with `Authorization: Bearer <api key>`. Errors are RFC 9457 problem JSON.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select

from audit import Actor
from identity import groups, invitations, jsontext, keys, orgs, seats, team_deletion, teams, users
from identity.errors import (
    Conflict,
    DomainError,
    InvalidValue,
    LastOwner,
    NotFound,
    PermissionDenied,
    SeatCapReached,
    Unauthenticated,
)
from identity.models import GroupMapping, Invitation, Org, Team, User
from identity.roles import authorize
from identity.service import run

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# What every row id is (str(uuid4())): a cursor that is not one is refused, not read as a place.
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
STATUS = {NotFound: 404, Conflict: 409, InvalidValue: 400, PermissionDenied: 403, LastOwner: 409,
          SeatCapReached: 403, Unauthenticated: 401}


@bp.errorhandler(DomainError)
def domain_problem(error: DomainError) -> Response:
    """Render a domain error as problem JSON with the status of its kind (shared by the API blueprints)."""
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 400)
    return problem(status, error.code, error.message, {k: v for k, v in error.context.items() if k != "org_id"})


def problem(status: int, code: str, detail: str, extra: dict[str, Any] | None = None) -> Response:
    """Return an RFC 9457 problem response; `extra` members never replace the standard ones."""
    body: dict[str, Any] = {"type": f"about:blank#{code}", "title": code.replace("_", " "), "status": status,
                            "detail": detail, "code": code, "request_id": g.get("request_id")}
    body.update({key: value for key, value in (extra or {}).items() if key not in body})
    response = jsonify(body)
    response.status_code = status
    response.content_type = "application/problem+json"
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="identity"'
    return response


def refuse_nul() -> None:
    """Refuse NUL in a path or query string as bad input: PostgreSQL text cannot hold it (a 500 there)."""
    if any(_has_nul(value) for value in (request.view_args or {}).values()) or _has_nul(
            [*request.args.keys(), *(v for values in request.args.listvalues() for v in values)]):
        raise InvalidValue("the path and query must not contain NUL characters")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return isinstance(value, list) and any(_has_nul(v) for v in value)


bp.before_request(refuse_nul)


def authenticated(view: Callable[..., Any]) -> Callable[..., Any]:
    """Require a valid API key; put its identity in `g.key` and its actor in `g.actor`."""
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from identity.app import database

        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
        with database().transaction() as session:
            g.key = keys.verify_api_key(session, secret.strip())
        if view.__name__ != "whoami_key" and "admin" not in g.key.scopes:
            raise PermissionDenied("this key has no 'admin' scope for the admin API")
        g.actor = g.key.actor().with_request(g.request_id, request.remote_addr, request.user_agent.string,
                                             client_request_id=g.get("client_request_id"))
        return view(*args, **kwargs)
    return wrapper


def json_body(*fields: str) -> dict[str, Any]:
    """Return the JSON object of the request; any member other than `fields` is refused, not ignored."""
    data = None
    if request.is_json:
        try:
            data = jsontext.loads(request.get_data())
        except ValueError as error:  # not JSON, NaN, or nested deeper than jsontext.MAX_DEPTH
            raise InvalidValue(f"the request body is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise InvalidValue("the request body must be a JSON object")
    if _has_nul(data):
        raise InvalidValue("strings must not contain NUL characters")  # PostgreSQL text cannot hold them
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidValue(f"unknown fields: {', '.join(map(repr, unknown))}", field=unknown[0])
    return data


def _text(data: dict[str, Any], name: str, default: str = "") -> str:
    """Return the string member `name` (else `default`); any other JSON type is refused, not coerced."""
    value = data.get(name, default)
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string", field=name)
    return value


def _optional_text(data: dict[str, Any], name: str) -> str | None:
    """Return the string member `name`, or None when it is absent or null."""
    return None if data.get(name) is None else _text(data, name)


def _role(data: dict[str, Any]) -> str | None:
    """Return the `role` member: absent or null means the default; an empty or non-string role is refused."""
    role = _optional_text(data, "role")
    if role == "":
        raise InvalidValue("role must be one of owner, admin, member, viewer", field="role")
    return role


def known_args(*names: str) -> None:
    """Refuse a query parameter the operation does not take: a misspelt filter must not widen a read."""
    unknown = sorted(set(request.args) - set(names))
    if unknown:
        raise InvalidValue(f"unknown query parameters: {', '.join(map(repr, unknown))}", field=unknown[0])


def int_arg(name: str, default: int) -> int:
    """Return the integer query parameter `name` (else `default`); text or a repeated value is refused."""
    values = request.args.getlist(name)
    if not values:
        return default
    if len(values) > 1 or not re.fullmatch(r"-?[0-9]{1,18}", values[0]):
        raise InvalidValue(f"{name} must be one integer", field=name)
    return int(values[0])


def _after_id() -> str:
    """Return the `after` cursor of a keyset page: a row id (`next` of the previous page), or ""."""
    values = request.args.getlist("after")
    if not values:
        return ""
    if len(values) > 1 or not (values[0] == "" or ID.fullmatch(values[0])):
        raise InvalidValue("after must be the `next` of the previous page", field="after")
    return values[0]


def caller_org_id(org_ref: str) -> str:
    """Resolve an org id or slug within the caller's own org; any other org is not found."""
    if org_ref not in (g.key.org_id, g.key.org_slug):
        raise NotFound(f"no org {org_ref!r}")
    org_id: str = g.key.org_id
    return org_id


def _db() -> Any:
    from identity.app import database

    return database()


@bp.get("/key")
@authenticated
def whoami_key() -> Response:
    """Tell whom the presented key speaks for: the gateway's one call to verify a key."""
    k = g.key
    return jsonify({"key_id": k.key_id, "org": {"id": k.org_id, "slug": k.org_slug}, "team_id": k.team_id,
                    "user": {"id": k.user_id, "userName": k.user_name}, "role": k.role, "team_role": k.team_role,
                    "scopes": list(k.scopes)})


@bp.get("/orgs/<org_ref>/seats")
@authenticated
def seat_preview(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "billing.read", org_id=org_id)
    with _db().reading() as session:
        return jsonify(seats.preview(session.get(Org, org_id)).as_dict())


def _member(session: Any, user: User) -> dict[str, Any]:
    return {"id": user.id, "userName": user.user_name, "email": user.email, "active": user.active,
            "role": users.org_role(session, user.id), "teams": users.team_roles(session, user.id),
            "source": user.source}


@bp.get("/orgs/<org_ref>/members")
@authenticated
def list_members(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "directory.read", org_id=org_id)
    known_args("limit", "after")
    limit = min(max(int_arg("limit", 100), 1), 500)
    after = _after_id()
    with _db().reading() as session:
        found = list(session.scalars(select(User).where(User.org_id == org_id, User.deleted_at.is_(None),
                                                         User.id > after).order_by(User.id).limit(limit)))
        members = [_member(session, u) for u in found]
    return jsonify({"members": members, "next": found[-1].id if len(found) == limit else None})


@bp.post("/orgs/<org_ref>/members")
@authenticated
def add_member(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("email", "role", "team_id")
    email = _text(data, "email", "")
    user = run(_db(), g.actor, users.provision_user, org_id, user_name=email, email=email,
               role=_role(data), team_id=_optional_text(data, "team_id"), source="manual")
    with _db().reading() as session:
        return jsonify(_member(session, session.get(User, user.id))), 201


@bp.patch("/orgs/<org_ref>/members/<user_id>")
@authenticated
def update_member(org_ref: str, user_id: str) -> Response:
    org_id, data = caller_org_id(org_ref), json_body("role", "active")
    role = _text(data, "role") if "role" in data else None
    if "active" in data and not isinstance(data["active"], bool):
        raise InvalidValue("active must be true or false", field="active")
    run(_db(), g.actor, _change_member, org_id, user_id, role, data.get("active"))
    with _db().reading() as session:
        return jsonify(_member(session, users.get_user(session, org_id, user_id)))


def _change_member(session: Any, actor: Actor, org_id: str, user_id: str, role: str | None,
                   active: bool | None) -> None:
    """Apply a role and an active state in one transaction, so that a refused half undoes the other."""
    if role is not None:
        users.change_role(session, actor, org_id, user_id, role)
    if active is not None:
        (users.reactivate_user if active else users.deactivate_user)(session, actor, org_id, user_id)


@bp.delete("/orgs/<org_ref>/members/<user_id>")
@authenticated
def remove_member(org_ref: str, user_id: str) -> tuple[str, int]:
    run(_db(), g.actor, users.delete_user, caller_org_id(org_ref), user_id)
    return "", 204


def _team(team: Team) -> dict[str, Any]:
    return {"id": team.id, "name": team.name, "default": team.is_default, "created": team.created_at.isoformat()}


@bp.get("/orgs/<org_ref>/teams")
@authenticated
def list_teams(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "directory.read", org_id=org_id)
    with _db().reading() as session:
        found = session.scalars(select(Team).where(Team.org_id == org_id).order_by(Team.created_at, Team.id))
        return jsonify({"teams": [_team(t) for t in found]})


@bp.post("/orgs/<org_ref>/teams")
@authenticated
def create_team(org_ref: str) -> tuple[Response, int]:
    org_id = caller_org_id(org_ref)
    team = run(_db(), g.actor, teams.create_team, org_id, _text(json_body("name"), "name", ""))
    return jsonify(_team(team)), 201


@bp.patch("/orgs/<org_ref>/teams/<team_id>")
@authenticated
def rename_team(org_ref: str, team_id: str) -> Response:
    org_id = caller_org_id(org_ref)
    team = run(_db(), g.actor, teams.rename_team, org_id, team_id, _text(json_body("name"), "name", ""))
    return jsonify(_team(team))


@bp.delete("/orgs/<org_ref>/teams/<team_id>")
@authenticated
def delete_team(org_ref: str, team_id: str) -> tuple[str, int]:
    run(_db(), g.actor, team_deletion.delete_team, caller_org_id(org_ref), team_id)
    return "", 204


def _settings(org: Org) -> dict[str, Any]:
    return {name: getattr(org, name) for name in orgs.SETTINGS}


@bp.get("/orgs/<org_ref>/settings")
@authenticated
def get_settings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "directory.read", org_id=org_id)
    with _db().reading() as session:
        return jsonify(_settings(session.get(Org, org_id)))


@bp.patch("/orgs/<org_ref>/settings")
@authenticated
def change_settings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    org = run(_db(), g.actor, orgs.update_settings, org_id, json_body(*orgs.SETTINGS))
    return jsonify(_settings(org))


def _invitation(invitation: Invitation) -> dict[str, Any]:
    return {"id": invitation.id, "email": invitation.email, "role": invitation.role, "team_id": invitation.team_id,
            "status": invitation.status, "expires_at": invitation.expires_at.isoformat()}


@bp.post("/orgs/<org_ref>/invitations")
@authenticated
def create_invitation(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("email", "role", "team_id")
    invitation, token = run(_db(), g.actor, invitations.invite, org_id, email=_text(data, "email", ""),
                            role=_role(data) or "member", team_id=_optional_text(data, "team_id"))
    with _db().reading() as session:
        preview = seats.preview(session.get(Org, org_id)).as_dict()
    return jsonify({**_invitation(invitation), "token": token, "seats": preview}), 201


@bp.get("/orgs/<org_ref>/invitations")
@authenticated
def list_invitations(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "members.manage", org_id=org_id)
    with _db().reading() as session:
        found = session.scalars(select(Invitation).where(Invitation.org_id == org_id)
                                .order_by(Invitation.created_at.desc()).limit(500))
        return jsonify({"invitations": [_invitation(i) for i in found]})


def _invitation_token() -> tuple[str, Actor]:
    """Read the link token and its holder; record its expiry first, in a transaction of its own."""
    token = _text(json_body("token"), "token", "")
    with _db().transaction() as session:
        invitations.expire_if_due(session, token)
        actor = invitations.invitee(session, token)
    return token, actor.with_request(g.request_id, request.remote_addr, request.user_agent.string,
                                     client_request_id=g.get("client_request_id"))


@bp.post("/invitations/accept")
def accept_invitation() -> tuple[Response, int]:
    """Accept with the link's token (the token is the credential; no API key)."""
    token, actor = _invitation_token()
    user = run(_db(), actor, invitations.accept, token)
    with _db().reading() as session:
        return jsonify(_member(session, session.get(User, user.id))), 201


@bp.post("/invitations/decline")
def decline_invitation() -> tuple[str, int]:
    token, actor = _invitation_token()
    run(_db(), actor, invitations.decline, token)
    return "", 204


@bp.post("/orgs/<org_ref>/api-keys")
@authenticated
def create_api_key(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body("name", "team_id", "user_id", "scopes")
    scopes = data.get("scopes", ["inference"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise InvalidValue("scopes must be a list of strings", field="scopes")
    issued = run(_db(), g.actor, keys.create_api_key, org_id, user_id=_optional_text(data, "user_id") or g.key.user_id,
                 team_id=_optional_text(data, "team_id") or g.key.team_id, name=_text(data, "name"), scopes=scopes)
    return jsonify({"id": issued.id, "prefix": issued.prefix, "key": issued.secret}), 201


@bp.delete("/orgs/<org_ref>/api-keys/<key_id>")
@authenticated
def revoke_api_key(org_ref: str, key_id: str) -> tuple[str, int]:
    run(_db(), g.actor, keys.revoke_api_key, caller_org_id(org_ref), key_id)
    return "", 204


@bp.post("/orgs/<org_ref>/scim-tokens")
@authenticated
def create_scim_token(org_ref: str) -> tuple[Response, int]:
    org_id = caller_org_id(org_ref)
    issued = run(_db(), g.actor, keys.create_scim_token, org_id, name=_text(json_body("name"), "name", "SCIM"))
    return jsonify({"id": issued.id, "prefix": issued.prefix, "token": issued.secret}), 201


@bp.delete("/orgs/<org_ref>/scim-tokens/<token_id>")
@authenticated
def revoke_scim_token(org_ref: str, token_id: str) -> tuple[str, int]:
    run(_db(), g.actor, keys.revoke_scim_token, caller_org_id(org_ref), token_id)
    return "", 204


def _when(moment: Any) -> str | None:
    return None if moment is None else moment.isoformat()


@bp.get("/orgs/<org_ref>/scim-tokens")
@authenticated
def list_scim_tokens(org_ref: str) -> Response:
    """List the org's SCIM bearer tokens: names, prefixes and times, never a secret."""
    org_id = caller_org_id(org_ref)
    with _db().reading() as session:
        found = keys.list_scim_tokens(session, g.actor, org_id)
    return jsonify({"scim_tokens": [{"id": t.id, "name": t.name, "prefix": t.prefix, "created": _when(t.created_at),
                                     "last_used": _when(t.last_used_at), "revoked": _when(t.revoked_at)}
                                    for t in found]})


@bp.get("/orgs/<org_ref>/scim-clients")
@authenticated
def list_scim_clients(org_ref: str) -> Response:
    """List the org's OAuth clients for SCIM: ids, names and times, never a secret."""
    org_id = caller_org_id(org_ref)
    with _db().reading() as session:
        found = keys.list_scim_clients(session, g.actor, org_id)
    return jsonify({"scim_clients": [{"id": c.id, "client_id": c.client_id, "name": c.name,
                                      "created": _when(c.created_at), "revoked": _when(c.revoked_at)}
                                     for c in found]})


@bp.delete("/orgs/<org_ref>/scim-clients/<client_id>")
@authenticated
def revoke_scim_client(org_ref: str, client_id: str) -> tuple[str, int]:
    """Revoke an OAuth client (by id or client_id): its access tokens are refused from the next request."""
    run(_db(), g.actor, keys.revoke_scim_client, caller_org_id(org_ref), client_id)
    return "", 204


def _mapping(rule: GroupMapping) -> dict[str, Any]:
    return {"id": rule.id, "group_external_id": rule.group_external_id, "group_display_name": rule.group_display_name,
            "team_id": rule.team_id, "team_role": rule.team_role, "org_role": rule.org_role}


MAPPING_FIELDS = ("group_external_id", "group_display_name", "team_id", "team_role", "org_role")


@bp.get("/orgs/<org_ref>/group-mappings")
@authenticated
def list_mappings(org_ref: str) -> Response:
    org_id = caller_org_id(org_ref)
    authorize(g.actor, "directory.read", org_id=org_id)
    with _db().reading() as session:
        found = session.scalars(select(GroupMapping).where(GroupMapping.org_id == org_id)
                                .order_by(GroupMapping.created_at))
        return jsonify({"group_mappings": [_mapping(m) for m in found]})


@bp.post("/orgs/<org_ref>/group-mappings")
@authenticated
def create_mapping(org_ref: str) -> tuple[Response, int]:
    org_id, data = caller_org_id(org_ref), json_body(*MAPPING_FIELDS)
    fields = {k: data.get(k) for k in MAPPING_FIELDS}
    if not all(v is None or isinstance(v, str) for v in fields.values()):
        raise InvalidValue("group mapping fields are strings")
    rule = run(_db(), g.actor, groups.create_mapping, org_id, **fields)
    return jsonify(_mapping(rule)), 201


@bp.delete("/orgs/<org_ref>/group-mappings/<mapping_id>")
@authenticated
def delete_mapping(org_ref: str, mapping_id: str) -> tuple[str, int]:
    run(_db(), g.actor, groups.delete_mapping, caller_org_id(org_ref), mapping_id)
    return "", 204
