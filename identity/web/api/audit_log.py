"""Admin API for the audit log (under /api/v1): reading, exporting, checkpoints, the public key.

Reading and exporting are themselves audited (`audit.read`, `audit.exported`). A page of events
ends with an opaque cursor that carries the position and the filters; without `until` the
cursor never runs out, so that a SIEM can poll it to tail the log, as Okta's System Log allows.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from audit import checkpoints, events, export, signing
from identity import audit_access, audit_filters, config, jsontext
from identity.audit_filters import FILTERS, selection_of
from identity.errors import InvalidValue
from identity.jsontext import UNSTORABLE
from identity.service import run
from identity.web.api.common import ADMIN, adopt, authenticated, caller_org_id, problem
from identity.web.api.query import int_arg, one_arg
from identity.web.context import database

# Domain errors become problem JSON through the admin API's one table of statuses.
bp = adopt(Blueprint("api_audit", __name__, url_prefix="/api/v1"))

MAX_LIMIT = 1000


def signing_key() -> Ed25519PrivateKey:
    """Return the service's checkpoint key: app config `AUDIT_SIGNING_KEY`, else the environment's or data folder's."""
    key: Ed25519PrivateKey | None = current_app.extensions.get("audit.signing_key")
    if key is None:
        configured = current_app.config.get("AUDIT_SIGNING_KEY")
        key = signing.parse_private_key(configured) if configured else signing.load_signing_key(config.data_dir())
        current_app.extensions["audit.signing_key"] = key
    return key


def filters_from(args: Any, one: Callable[[str], str | None] | None = None) -> dict[str, Any]:
    """Return the filters of a query string (identity.audit_filters reads them): shared with the console's page.

    `one` reads a single-valued filter: the API's refuses a repeated one (query.one_arg); by default the first.
    """
    return audit_filters.filters_from(one or args.get, args.getlist("action"))


def _selection(org_id: str, filters: dict[str, Any], after: int = 0) -> events.Selection:
    """The events `filters` select (identity.audit_filters reads them: an actor's address needs the database)."""
    with database().reading() as session:
        return selection_of(session, org_id, filters, after)


def encode_cursor(after_seq: int, filters: dict[str, Any]) -> str:
    """Return the opaque cursor of a position in a filtered reading of the log."""
    raw = json.dumps({"v": 1, "after": after_seq, "filters": filters}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# A cursor's position is an event's seq: a BIGINT on PostgreSQL.
MAX_SEQ = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[int, dict[str, Any]]:
    """Return (position, filters) of a cursor, or raise InvalidValue.

    A cursor comes back from the client, so it is checked as any input is: the shape that
    `encode_cursor` writes (a seq, string filters, a list of action strings), nothing else.
    """
    try:
        data = jsontext.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise InvalidValue("invalid cursor", field="cursor") from error
    after = data.get("after") if isinstance(data, dict) else None
    filters = data.get("filters") if isinstance(data, dict) else None
    if type(after) is not int or not 0 <= after <= MAX_SEQ:
        raise InvalidValue("invalid cursor", field="cursor")
    if not isinstance(filters, dict) or not _valid_filters(filters):
        raise InvalidValue("invalid cursor", field="cursor")
    return after, filters


def _valid_filters(filters: dict[str, Any]) -> bool:
    if not set(filters) <= set(FILTERS):
        return False
    actions = filters.get("action", [])
    texts = [*(actions if isinstance(actions, list) else [None]),
             *(value for name, value in filters.items() if name != "action")]
    return all(isinstance(text, str) and not UNSTORABLE.search(text) for text in texts)


def _limit() -> int:
    limit = int_arg("limit", 100)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidValue(f"limit must be 1 to {MAX_LIMIT}", field="limit")
    return limit


@bp.get("/orgs/<org_ref>/audit-events")
@authenticated(scope=ADMIN)
def list_events(org_ref: str) -> Response:
    """Return a page of events in chain order, and the cursor of the next page (null once a closed range ends)."""
    org_id, limit = caller_org_id(org_ref), _limit()
    cursor = one_arg("cursor")
    after, filters = decode_cursor(cursor) if cursor else (0, filters_from(request.args, one_arg))
    page = run(database(), g.actor, audit_access.read_events, _selection(org_id, filters, after), limit)
    rows = page.rows
    next_cursor = None if page.ended else encode_cursor(page.position, filters)
    link = None
    if next_cursor:
        link = url_for(".list_events", org_ref=org_ref) + "?" + urlencode({"cursor": next_cursor, "limit": limit})
    response = jsonify({"events": [events.document(row) for row in rows], "next_cursor": next_cursor, "next": link})
    if link:
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


@bp.get("/orgs/<org_ref>/audit-events/export")
@authenticated(scope=ADMIN)
def export_events(org_ref: str) -> Response:
    """Stream the selected events as JSON Lines, CSV or OCSF JSON Lines; the export is audited first."""
    org_id = caller_org_id(org_ref)
    fmt = one_arg("format", "jsonl")
    if fmt not in export.FORMATS:
        raise InvalidValue(f"format must be one of {', '.join(export.FORMATS)}", field="format")
    selection = _selection(org_id, filters_from(request.args, one_arg))
    db = database()
    run(db, g.actor, audit_access.record_export, selection, fmt)

    def stream() -> Iterator[str]:
        with db.reading() as session:
            yield from export.chunks(events.iter_export_rows(session, selection), fmt)

    name = f"audit-{g.key.org_slug}.{export.EXTENSIONS[fmt]}"
    return Response(stream(), mimetype=export.MEDIA_TYPES[fmt].split(";")[0],
                    headers={"Content-Disposition": f'attachment; filename="{name}"',
                             "X-Content-Type-Options": "nosniff"})


@bp.get("/orgs/<org_ref>/audit-checkpoints")
@authenticated(scope=ADMIN)
def list_checkpoints(org_ref: str) -> Response:
    """Return the org's signed checkpoints, oldest first, after checkpoint id `after`."""
    org_id, limit = caller_org_id(org_ref), _limit()
    after = int_arg("after", 0)
    with database().reading() as session:  # one more than a page: `next` is null on the last one
        found = audit_access.list_checkpoints(session, g.actor, org_id, after=after, limit=limit + 1)
    page, following = found[:limit], found[limit - 1].id if len(found) > limit else None
    body = {"checkpoints": [{"id": c.id, **checkpoints.document(c)} for c in page],
            "next_after": following,
            "next": None if following is None else str(following),  # as every list's `next`: pass it as `after`
            "public_key_id": signing.key_id(signing_key())}
    return jsonify(body)


@bp.post("/orgs/<org_ref>/audit-checkpoints")
@authenticated(scope=ADMIN)
def create_checkpoint(org_ref: str) -> tuple[Response, int]:
    """Sign the org's current head now, and return the checkpoint to keep (409 `chain_broken` when
    the chain does not verify: documented in OPENAPI_PATHS, as every status a route answers)."""
    org_id = caller_org_id(org_ref)
    try:
        made = run(database(), g.actor, audit_access.sign_checkpoint, signing_key(), org_id)
        body = {"id": made.id, **checkpoints.document(made)}
    except checkpoints.UnverifiedHead as refused:  # nothing to sign: the chain itself is the finding
        return problem(409, "chain_broken", str(refused)), 409
    return jsonify(body), 201


@bp.get("/audit/public-key")
def public_key() -> Response:
    """Publish the public key that verifies every checkpoint (no credentials needed)."""
    key = signing_key()
    return jsonify({"algorithm": "Ed25519", "key_id": signing.key_id(key), "public_key_pem": signing.public_pem(key)})


# The OpenAPI description of these routes, merged into /openapi.json by identity.web.openapi.
def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"},
            "description": description}


_ORG = {"name": "org", "in": "path", "required": True, "schema": {"type": "string"}, "description": "org id or slug"}
_FILTERS = [
    _query("since", "ISO 8601 time, inclusive"), _query("until", "ISO 8601 time, exclusive"),
    _query("action", "an action or a prefix (`user.`, `user.*`); repeat or comma-separate for several"),
    _query("actor", "actor id"), _query("actor_type", "user, api_key, scim_token, scim_client, system"),
    _query("target", "target id"), _query("target_type", "org, team, user, ..."),
    _query("outcome", "success, failure, refused"),
]
_PROBLEM = {"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
_ERRORS = {code: {"description": text, **_PROBLEM} for code, text in (
    ("400", "an unknown or repeated query parameter; an invalid filter, cursor, after, limit or format"),
    ("401", "missing or invalid API key or session"),
    ("403", "only owners and admins read the audit log; a cookie request from another site"),
    ("404", "no such org in your org"),
    ("503", "the request conflicted with another made at the same time, or met a database connection that had "
            "just ended, and changed nothing (code conflict_retry): send it again after Retry-After seconds"),
    ("500", "an internal error naming its request_id; or a checkpoint whose COMMIT lost the database connection, "
            "which may have been made (code outcome_unknown): list the checkpoints before making one again"))}


def _ok(schema: dict[str, Any], status: str = "200", media: str = "application/json") -> dict[str, Any]:
    return {status: {"description": "OK", "content": {media: {"schema": schema}}}, **_ERRORS}


_EVENTS = {"$ref": "#/components/schemas/AuditEvent"}
_CHECKPOINT = {"$ref": "#/components/schemas/AuditCheckpoint"}
OPENAPI_PATHS: dict[str, dict[str, Any]] = {
    "/api/v1/orgs/{org}/audit-events": {"get": {
        "summary": "Read audit events in chain order; the cursor carries the filters and, without until, never ends",
        "parameters": [_ORG, *_FILTERS, _query("cursor", "next_cursor of the previous page"),
                       _query("limit", "1 to 1000 (default 100)", {"type": "integer", "minimum": 1, "maximum": 1000})],
        "responses": _ok({"type": "object", "properties": {
            "events": {"type": "array", "items": _EVENTS}, "next_cursor": {"type": ["string", "null"]},
            "next": {"type": ["string", "null"]}}}),
    }},
    "/api/v1/orgs/{org}/audit-events/export": {"get": {
        "summary": "Stream the selected events as JSON Lines, CSV or OCSF JSON Lines (docs/audit.md)",
        "parameters": [_ORG, *_FILTERS, _query("format", "jsonl (default), csv or ocsf",
                                               {"type": "string", "enum": ["jsonl", "csv", "ocsf"]})],
        "responses": {"200": {"description": "the export, streamed", "content": {
            "application/x-ndjson": {"schema": {"type": "string"}}, "text/csv": {"schema": {"type": "string"}}}},
            **_ERRORS},
    }},
    "/api/v1/orgs/{org}/audit-checkpoints": {
        "get": {"summary": "List the org's signed checkpoints, oldest first",
                "parameters": [_ORG, _query("after", "checkpoint id to continue after", {"type": "integer"}),
                               _query("limit", "1 to 1000", {"type": "integer", "minimum": 1, "maximum": 1000})],
                "responses": _ok({"type": "object", "properties": {
                    "checkpoints": {"type": "array", "items": _CHECKPOINT},
                    "next_after": {"type": ["integer", "null"]}, "next": {"type": ["string", "null"]},
                    "public_key_id": {"type": "string"}}})},
        "post": {"summary": "Sign the org's current head now; keep the checkpoint to prove history later",
                 "parameters": [_ORG], "responses": {**_ok(_CHECKPOINT, "201"), "409": {
                     "description": "chain_broken: the chain does not verify up to its head, so nothing is signed "
                                    "(the problem's detail names where it breaks; docs/audit.md)", **_PROBLEM}}},
    },
    "/api/v1/audit/public-key": {"get": {
        "summary": "The Ed25519 public key that verifies every checkpoint", "security": [], "parameters": [],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"algorithm": {"type": "string"}, "key_id": {"type": "string"},
                                             "public_key_pem": {"type": "string"}}}}}}},
    }},
}
_PARTY = {"type": "object", "properties": {"type": {"type": "string"}, "id": {"type": "string"},
                                           "display": {"type": "string"}}}
_NULLABLE = {"type": ["string", "null"]}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "AuditEvent": {"type": "object", "properties": {
        "id": {"type": "string"}, "seq": {"type": "integer"}, "time": {"type": "string"}, "org_id": {"type": "string"},
        "actor": _PARTY, "action": {"type": "string"}, "target": _PARTY, "changes": {"type": "object"},
        "outcome": {"type": "string", "enum": ["success", "failure", "refused"]}, "request_id": _NULLABLE,
        "source_ip": _NULLABLE, "user_agent": _NULLABLE, "prev_hash": {"type": "string"}, "hash": {"type": "string"}}},
    "AuditCheckpoint": {"type": "object", "properties": {
        "id": {"type": "integer"}, "org_id": {"type": "string"}, "seq": {"type": "integer"}, "hash": {"type": "string"},
        "time": {"type": "string"}, "key_id": {"type": "string"}, "signature": {"type": "string"},
        "reason": {"type": "string", "enum": ["manual", "scheduled", "export", "purge"]}}},
}
