"""SCIM 2.0 endpoints under /scim/v2 (RFC 7644): a thin adapter from wire JSON to identity services.

Each handler reads the request, calls domain services in one transaction, and renders the result;
errors of every kind leave as SCIM error JSON (section 3.12) with `status` as a string. The
handlers are plain functions of (parameters, body) so that /Bulk runs exactly the same code.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from audit import Actor
from identity import groups, jsontext, keys, users
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
from identity.models import IdpGroup, User
from identity.service import run
from identity.web.context import database
from scim import discovery, errors, listing, resources
from scim.auth import authenticate, init_oauth
from scim.patch import Operation, apply_patch, parse_operations, plan_group_patch
from scim.schema import GROUP, USER

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
SCIM_JSON = "application/scim+json"
Result = tuple[int, dict[str, Any] | None, dict[str, str]]

DOMAIN_ERRORS: dict[type[DomainError], Callable[[str], errors.ScimError]] = {
    NotFound: errors.NotFound, Conflict: errors.Uniqueness, InvalidValue: errors.InvalidValue,
    SeatCapReached: errors.Forbidden, PermissionDenied: errors.Forbidden, LastOwner: errors.Uniqueness,
    Unauthenticated: errors.Unauthorized,
}


def _db() -> Any:
    return database()


def _base() -> str:
    return f"{current_app.config['BASE_URL']}/scim/v2"


def _actor() -> Actor:
    actor: Actor = g.scim_actor
    return actor


@bp.record_once
def _install(state: Any) -> None:
    app: Flask = state.app
    init_oauth(app)
    app.extensions["identity.error_formats"][bp.url_prefix or "/scim/v2"] = _http_error


def _http_error(error: HTTPException) -> Response:
    """Answer routing and protocol errors under /scim/v2 in SCIM's format."""
    status = error.code or 500
    scim_type = "invalidSyntax" if status == 400 else None
    return _error_response(status, scim_type, error.description or error.name)


def _error_response(status: int, scim_type: str | None, detail: str) -> Response:
    body: dict[str, Any] = {"schemas": [errors.ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    response = Response(json.dumps(body), status=status, content_type=SCIM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="scim"'
    if status == 429:
        response.headers["Retry-After"] = "1"
    return response


@bp.errorhandler(errors.ScimError)
def _scim_error(error: errors.ScimError) -> Response:
    return _error_response(error.status, error.scim_type, error.detail)


@bp.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Response:
    return _scim_error(_translate(error))


def _translate(error: DomainError) -> errors.ScimError:
    for cls, scim in DOMAIN_ERRORS.items():
        if isinstance(error, cls):
            return scim(error.message)
    return errors.InvalidValue(error.message)


class _RateLimit:
    """Requests per second per org, counted in this process (see README: it is per worker)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.window: dict[str, tuple[int, int]] = {}

    def allow(self, org_id: str, limit: int) -> bool:
        second = int(time.monotonic())
        with self.lock:
            start, count = self.window.get(org_id, (second, 0))
            count = count + 1 if start == second else 1
            self.window[org_id] = (second, count)
            return count <= limit


RATE_LIMIT = _RateLimit()


@bp.before_request
def _authenticate() -> Response | None:
    header = request.headers.get("Authorization", "")
    # Read-only: on SQLite a write transaction takes the database's write lock, so every SCIM
    # request, reads included, would queue behind every other. A GET keeps this read
    # transaction for its handler (`_reading`): one transaction per lookup, not two. The
    # credential's last-used time changes at most once a minute (identity.keys); only then is
    # it saved, in a write transaction of its own.
    stack = ExitStack()
    session = stack.enter_context(_db().reading())
    try:
        presented = authenticate(session, header)
    except BaseException:
        stack.close()
        raise
    if request.method == "GET":
        g.scim_read = (stack, session)
    else:
        stack.close()
    if presented.use_due:
        with _db().transaction() as writing:
            keys.note_scim_token_use(writing, presented.actor.id)
    actor = presented.actor
    g.scim_actor = actor.with_request(g.get("request_id"), request.remote_addr, request.user_agent.string,
                                      client_request_id=g.get("client_request_id"))
    if not RATE_LIMIT.allow(actor.org_id or "", current_app.config.get("SCIM_RATE_LIMIT", 1000)):
        raise errors.TooManyRequests("rate limit exceeded; retry after the Retry-After seconds")
    return None


@bp.teardown_request
def _end_read(_error: BaseException | None) -> None:
    shared = g.pop("scim_read", None)
    if shared is not None:
        shared[0].close()


@contextmanager
def _reading() -> Iterator[Any]:
    """The request's read transaction when it has one (GET), else a new one."""
    shared = g.get("scim_read")
    if shared is not None:
        yield shared[1]
        return
    with _db().reading() as session:
        yield session


@bp.after_request
def _content_type(response: Response) -> Response:
    if response.mimetype == "application/json":
        response.content_type = SCIM_JSON
    return response


def _respond(result: Result) -> Response:
    status, body, headers = result
    streams: list[resources.MembersToStream] = []
    nonce = secrets.token_hex(8)  # so that no attribute a client stored can pass for a place-holder

    def place_holder(value: Any) -> str:
        if not isinstance(value, resources.MembersToStream):
            raise TypeError(f"{type(value).__name__} is not JSON")
        streams.append(value)
        return f"\x00{nonce}:{len(streams) - 1}\x00"

    text = "" if body is None else json.dumps(body, default=place_holder)
    if streams:
        pieces = []
        for index in range(len(streams)):
            before, _, text = text.partition(json.dumps(f"\x00{nonce}:{index}\x00"))
            pieces.append(before)
        pieces.append(text)
        # The stream takes over the request's read transaction: the members are read in the snapshot
        # the group was read in, and the transaction ends when the server closes the response
        # (after the last byte, or when the client went away), not at the request's teardown,
        # which runs before the first byte is sent.
        stack, session = g.pop("scim_read")
        response = Response(_streamed(pieces, streams, session, _base()), status=status, content_type=SCIM_JSON)
        response.call_on_close(stack.close)
    else:
        response = Response(text, status=status, content_type=SCIM_JSON if body is not None else None)
    response.headers.update(headers)
    return response


def _streamed(pieces: list[str], streams: list[resources.MembersToStream], session: Any,
              base: str) -> Iterator[bytes]:
    """The body around each group's members, and the members read and written 1,000 at a time,
    in the request's read transaction: memory stays flat whatever the size of the group."""
    for piece, members in zip(pieces, [*streams, None], strict=True):
        yield piece.encode()
        if members is None:
            continue
        separator = ""
        yield b"["
        for chunk in listing.iter_members(session, members.group_id):
            yield (separator + ", ".join(json.dumps(resources.member_to_wire(uid, display, base))
                                         for uid, display in chunk)).encode()
            separator = ", "
        yield b"]"


def _members_for(session: Any, group_ids: list[str]) -> dict[str, Any]:
    """Each group's members: to be streamed when the response is sent in the request's own read
    transaction (a GET), else read now (a write's answer, /Bulk, a POST /.search)."""
    if g.get("scim_read") is not None:
        return {gid: resources.MembersToStream(gid) for gid in group_ids}
    return listing.members_of(session, group_ids)


def _body() -> Any:
    raw = request.get_data(cache=False)
    try:
        return jsontext.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as error:
        raise errors.InvalidSyntax(f"the body is not valid JSON: {error}") from None


def _check_if_match(version: int) -> None:
    """Honour If-Match (RFC 7644 section 3.14): a stale version is 412, changing nothing."""
    wanted = request.headers.get("If-Match")
    if not wanted:
        return
    tags = {tag.strip() for tag in wanted.split(",")}
    if not tags & {"*", resources.etag(version), f'"{version}"'}:
        raise errors.PreconditionFailed(f"the resource is at version {resources.etag(version)}")


# ---- Users -------------------------------------------------------------------------------------

def _user_result(status: int, user: User, groups_of_user: list[tuple[str, str]] | None) -> Result:
    body = resources.user_to_wire(user, _base(), groups_of_user)
    return status, body, {"ETag": resources.etag(user.version), "Location": body["meta"]["location"]}


def list_users(params: dict[str, Any]) -> Result:
    query = listing.read_query(params)
    with _reading() as session:
        total, found = listing.list_users(session, _actor().org_id or "", query)
        wants_groups = _wants(query, "groups")
        memberships = listing.groups_of(session, [u.id for u in found]) if wants_groups else {}
        page = [resources.project(resources.user_to_wire(u, _base(), memberships.get(u.id)), query.attributes,
                                  query.excluded) for u in found]
    return 200, discovery.list_response(page, total, query.start), {}


def _wants(query: listing.Query, attribute: str) -> bool:
    if query.attributes:
        return attribute.lower() in {a.lower() for a in query.attributes}
    return attribute.lower() not in {a.lower() for a in query.excluded}


def get_user(user_id: str, params: dict[str, Any] | None = None) -> Result:
    query = listing.read_query(params or {})
    with _reading() as session:
        user = users.get_user(session, _actor().org_id or "", user_id)
        groups_of_user = listing.groups_of(session, [user.id])[user.id] if _wants(query, "groups") else None
        status, body, headers = _user_result(200, user, groups_of_user)
    return status, resources.project(body or {}, query.attributes, query.excluded), headers


def create_user(body: Any) -> Result:
    fields = resources.user_fields(body)
    user = run(_db(), _actor(), users.provision_user, _actor().org_id or "", source="scim", **fields)
    return _user_result(201, user, [])


def replace_user(user_id: str, body: Any, params: dict[str, Any] | None = None) -> Result:
    fields = resources.user_fields(body)

    def replace(session: Any, actor: Actor) -> User:
        user = users.get_user(session, actor.org_id or "", user_id)
        _check_if_match(user.version)
        return users.sync_user(session, actor, actor.org_id or "", user_id, fields)

    run(_db(), _actor(), replace)
    return get_user(user_id, params)


def _whole_extension(op: Operation) -> str | None:
    """The extension URN an operation's path names as a whole (`urn:...:enterprise:2.0:User`), or None."""
    path = op.path
    if path is None or path.uri is None or path.sub_attr is not None or path.value_filter is not None:
        return None
    urn = USER.urn(f"{path.uri}:{path.attr.name}")
    return urn if urn in USER.extensions else None


def _patch_user_doc(doc: dict[str, Any], operations: list[Operation]) -> dict[str, Any]:
    """Apply a User PATCH, with paths naming a whole extension object (RFC 7644 section 3.5.2).

    `add`/`replace` on the extension's URN set the sub-attributes given (the others stay, section
    3.5.2.1 and 3.5.2.3); `remove` takes the whole extension away.
    """
    for op in operations:
        urn = _whole_extension(op)
        if urn is None:
            doc = apply_patch(doc, [op])
        elif op.op == "remove":
            doc = {k: v for k, v in doc.items() if k.lower() != urn.lower()}
            doc["schemas"] = [x for x in doc.get("schemas") or [] if str(x).lower() != urn.lower()]
        elif isinstance(op.value, dict):
            value = {k: v for k, v in op.value.items() if k.lower() != "schemas"}
            doc = apply_patch(doc, [Operation(op.op, None, {urn: value}, True)])
        elif op.value is None:
            raise errors.InvalidValue(f"{op.op} on {urn} needs an object of its attributes as its value")
        else:
            raise errors.InvalidValue(f"{urn} is an extension object; got {op.value!r}")
    return doc


def patch_user(user_id: str, body: Any, params: dict[str, Any] | None = None) -> Result:
    operations = parse_operations(body)

    def patch(session: Any, actor: Actor) -> User:
        user = users.get_user(session, actor.org_id or "", user_id)
        _check_if_match(user.version)
        patched = _patch_user_doc(resources.user_to_wire(user, _base()), operations)
        return users.sync_user(session, actor, actor.org_id or "", user_id, resources.user_fields(patched))

    run(_db(), _actor(), patch)
    return get_user(user_id, params)


def delete_user(user_id: str) -> Result:
    def remove(session: Any, actor: Actor) -> User:
        _check_if_match(users.get_user(session, actor.org_id or "", user_id).version)
        return users.remove_user(session, actor, actor.org_id or "", user_id)

    run(_db(), _actor(), remove)
    return 204, None, {}


# ---- Groups ------------------------------------------------------------------------------------

def _group_result(status: int, group: IdpGroup,
                  members: list[tuple[str, str | None]] | resources.MembersToStream | None) -> Result:
    body = resources.group_to_wire(group, _base(), members)
    return status, body, {"ETag": resources.etag(group.version), "Location": body["meta"]["location"]}


def list_groups(params: dict[str, Any]) -> Result:
    query = listing.read_query(params)
    with _reading() as session:
        total, found = listing.list_groups(session, _actor().org_id or "", query)
        members = _members_for(session, [x.id for x in found]) if _wants(query, "members") else {}
        page = [resources.project(resources.group_to_wire(x, _base(), members.get(x.id)), query.attributes,
                                  query.excluded) for x in found]
    return 200, discovery.list_response(page, total, query.start), {}


def get_group(group_id: str, params: dict[str, Any] | None = None) -> Result:
    query = listing.read_query(params or {})
    with _reading() as session:
        group = groups.get_group(session, _actor().org_id or "", group_id)
        members = _members_for(session, [group.id])[group.id] if _wants(query, "members") else None
        status, body, headers = _group_result(200, group, members)
    return status, resources.project(body or {}, query.attributes, query.excluded), headers


def create_group(body: Any) -> Result:
    fields = resources.group_fields(body)
    group = run(_db(), _actor(), groups.create_group, _actor().org_id or "", **fields)
    _, body, headers = get_group(group.id)
    return 201, body, headers


def replace_group(group_id: str, body: Any) -> Result:
    fields = resources.group_fields(body)

    def replace(session: Any, actor: Actor) -> None:
        org_id = actor.org_id or ""
        _check_if_match(groups.get_group(session, org_id, group_id).version)
        groups.update_group(session, actor, org_id, group_id, display_name=fields["display_name"],
                            external_id=fields["external_id"], attributes=fields["attributes"],
                            clear_external_id=fields["external_id"] is None)
        groups.replace_members(session, actor, org_id, group_id, fields["member_ids"])

    run(_db(), _actor(), replace)
    return get_group(group_id)


def patch_group(group_id: str, body: Any, params: dict[str, Any]) -> Result:
    operations = parse_operations(body)

    def patch(session: Any, actor: Actor) -> None:
        org_id = actor.org_id or ""
        group = groups.get_group(session, org_id, group_id)
        _check_if_match(group.version)
        plan = plan_group_patch(resources.group_to_wire(group, _base(), None), operations)
        fields = resources.normalize(plan.resource, GROUP)
        display_name = fields.get("displayName")
        if not isinstance(display_name, str) or not display_name.strip():
            raise errors.InvalidValue("displayName is required")
        external_id = fields.get("externalId")
        if external_id is not None and not isinstance(external_id, str):
            raise errors.InvalidValue("externalId must be a string")
        groups.update_group(session, actor, org_id, group_id, display_name=display_name,
                            external_id=external_id, clear_external_id=external_id in (None, ""),
                            attributes={k: v for k, v in fields.items() if k not in resources.COMPUTED | {
                                "members", "displayName", "externalId"}})
        if plan.replace_all is not None:
            groups.replace_members(session, actor, org_id, group_id, list(plan.replace_all))
        groups.remove_members(session, actor, org_id, group_id, list(plan.removed))
        groups.add_members(session, actor, org_id, group_id, list(plan.added))

    run(_db(), _actor(), patch)
    if not any(k.lower() in ("attributes", "excludedattributes") for k in params):
        return 204, None, {}
    return get_group(group_id, params)


def delete_group(group_id: str) -> Result:
    def remove(session: Any, actor: Actor) -> None:
        _check_if_match(groups.get_group(session, actor.org_id or "", group_id).version)
        groups.delete_group(session, actor, actor.org_id or "", group_id)

    run(_db(), _actor(), remove)
    return 204, None, {}


# ---- Routes ------------------------------------------------------------------------------------

@bp.get("/Users")
def users_list() -> Response:
    return _respond(list_users(request.args.to_dict()))


@bp.post("/Users/.search")
def users_search() -> Response:
    return _respond(list_users(_search_body()))


def _search_body() -> dict[str, Any]:
    body = _body()
    if not isinstance(body, dict):
        raise errors.InvalidSyntax("a search body is a JSON object")
    return body


@bp.post("/Users")
def users_create() -> Response:
    return _respond(create_user(_body()))


@bp.get("/Users/<user_id>")
def users_get(user_id: str) -> Response:
    return _respond(get_user(user_id, request.args.to_dict()))


@bp.put("/Users/<user_id>")
def users_replace(user_id: str) -> Response:
    return _respond(replace_user(user_id, _body(), request.args.to_dict()))


@bp.patch("/Users/<user_id>")
def users_patch(user_id: str) -> Response:
    return _respond(patch_user(user_id, _body(), request.args.to_dict()))


@bp.delete("/Users/<user_id>")
def users_delete(user_id: str) -> Response:
    return _respond(delete_user(user_id))


@bp.get("/Groups")
def groups_list() -> Response:
    return _respond(list_groups(request.args.to_dict()))


@bp.post("/Groups/.search")
def groups_search() -> Response:
    return _respond(list_groups(_search_body()))


@bp.post("/Groups")
def groups_create() -> Response:
    return _respond(create_group(_body()))


@bp.get("/Groups/<group_id>")
def groups_get(group_id: str) -> Response:
    return _respond(get_group(group_id, request.args.to_dict()))


@bp.put("/Groups/<group_id>")
def groups_replace(group_id: str) -> Response:
    return _respond(replace_group(group_id, _body()))


@bp.patch("/Groups/<group_id>")
def groups_patch(group_id: str) -> Response:
    return _respond(patch_group(group_id, _body(), request.args.to_dict()))


@bp.delete("/Groups/<group_id>")
def groups_delete(group_id: str) -> Response:
    return _respond(delete_group(group_id))


@bp.post("/.search")
def root_search() -> Response:
    """Searching several resource types at once (RFC 7644 section 3.4.3) is not offered: 501."""
    return _error_response(501, None, "search /Users/.search or /Groups/.search; searching several "
                                      "resource types at once is not implemented")


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    return _respond((200, discovery.service_provider_config(_base()), {}))


@bp.get("/ResourceTypes")
def resource_types() -> Response:
    found = discovery.resource_types(_base())
    return _respond((200, discovery.list_response(found), {}))


@bp.get("/ResourceTypes/<name>")
def resource_type(name: str) -> Response:
    found = next((r for r in discovery.resource_types(_base()) if r["id"] == name), None)
    if found is None:
        raise errors.NotFound(f"no resource type {name!r}")
    return _respond((200, found, {}))


@bp.get("/Schemas")
def schemas() -> Response:
    return _respond((200, discovery.list_response(discovery.schemas(_base())), {}))


@bp.get("/Schemas/<path:urn>")
def schema(urn: str) -> Response:
    found = next((s for s in discovery.schemas(_base()) if s["id"] == urn), None)
    if found is None:
        raise errors.NotFound(f"no schema {urn!r}")
    return _respond((200, found, {}))


# ---- Bulk (RFC 7644 section 3.7) ---------------------------------------------------------------

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


def _resolve_bulk_ids(value: Any, created: dict[str, str]) -> Any:
    """Replace "bulkId:<id>" references with the ids of resources created earlier in the request."""
    if isinstance(value, str) and value.startswith("bulkId:"):
        ref = value[len("bulkId:"):]
        if ref not in created:
            raise errors.InvalidValue(f"unknown or not yet created bulkId {ref!r}")
        return created[ref]
    if isinstance(value, list):
        return [_resolve_bulk_ids(item, created) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_bulk_ids(item, created) for key, item in value.items()}
    return value


def _bulk_dispatch(method: str, path: str, data: Any) -> Result:
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("Users", "Groups") or len(parts) > 2:
        raise errors.InvalidValue(f"unsupported bulk path {path!r}")
    kind, resource_id = parts[0], (parts[1] if len(parts) == 2 else None)
    handlers: dict[tuple[str, bool], Callable[[], Result]] = {
        ("POST", False): lambda: (create_user if kind == "Users" else create_group)(data),
        ("PUT", True): lambda: (replace_user if kind == "Users" else replace_group)(resource_id or "", data),
        ("PATCH", True): lambda: patch_user(resource_id or "", data) if kind == "Users"
        else patch_group(resource_id or "", data, {}),
        ("DELETE", True): lambda: (delete_user if kind == "Users" else delete_group)(resource_id or ""),
    }
    handler = handlers.get((method, resource_id is not None))
    if handler is None:
        raise errors.InvalidValue(f"{method} {path} is not a bulk operation")
    return handler()


def bulk(body: Any) -> Result:
    """Run each operation in its own transaction, in order, until failOnErrors errors are reached."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise errors.InvalidSyntax("a bulk request has an \"Operations\" array")
    operations = body["Operations"]
    if len(operations) > discovery.MAX_BULK_OPERATIONS:
        raise errors.PayloadTooLarge(f"at most {discovery.MAX_BULK_OPERATIONS} operations per bulk request")
    fail_on = body.get("failOnErrors")
    if fail_on is not None and (not isinstance(fail_on, int) or isinstance(fail_on, bool) or fail_on < 1):
        raise errors.InvalidValue("failOnErrors must be a positive integer")
    created: dict[str, str] = {}
    results, failures = [], 0
    for operation in operations:
        if not isinstance(operation, dict):
            raise errors.InvalidSyntax("each bulk operation is a JSON object")
        method, path = str(operation.get("method", "")).upper(), str(operation.get("path", ""))
        bulk_id = operation.get("bulkId")
        outcome: dict[str, Any] = {"method": method, **({"bulkId": bulk_id} if bulk_id else {})}
        try:
            if method == "POST" and not bulk_id:
                raise errors.InvalidValue("a POST in a bulk request needs a bulkId")
            status, resource, headers = _bulk_dispatch(
                method, _resolve_bulk_ids(path, created), _resolve_bulk_ids(operation.get("data"), created))
            if bulk_id and resource is not None and method == "POST":
                created[str(bulk_id)] = resource["id"]
            outcome["status"] = str(status)
            outcome.update({name: headers[header] for name, header in (("location", "Location"), ("version", "ETag"))
                            if header in headers})
        except (errors.ScimError, DomainError) as error:
            scim_error = error if isinstance(error, errors.ScimError) else _translate(error)
            failures += 1
            outcome.update({"status": str(scim_error.status), "response": scim_error.to_json()})
        results.append(outcome)
        if fail_on is not None and failures >= fail_on:
            break
    return 200, {"schemas": [BULK_RESPONSE], "Operations": results}, {}


@bp.post("/Bulk")
def bulk_route() -> Response:
    return _respond(bulk(_body()))
