"""The SCIM blueprint under /scim/v2 (RFC 7644): its error table and the hooks every request runs.

Before each request: the bearer credential (scim.auth) and the per-org rate limit; after it: the
`application/scim+json` media type. Errors of every kind leave as SCIM error JSON (section 3.12)
with `status` as a string; domain errors are mapped onto SCIM errors in one table here, a transient
database conflict (a deadlock...) is a 503 with Retry-After, and any other unexpected error is a bare
500 naming the request id (`_unexpected_error`). The
routes live by resource: scim.user_views, scim.group_views, scim.bulk, scim.discovery_views.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from audit import Actor
from identity import scim_credentials
from identity.db import CommitUnknown, transient_kind
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
from identity.web import transient
from identity.web.http_errors import bearer_challenge, kept_headers
from scim import context, discovery, errors, idp_lookups, provisioning_status
from scim.auth import authenticate, init_oauth
from scim.streaming import SCIM_JSON

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
log = logging.getLogger("identity.http")  # the app's request log, where its own handler logs (identity.web.app)

DOMAIN_ERRORS: dict[type[DomainError], Callable[[str], errors.ScimError]] = {
    NotFound: errors.NotFound, Conflict: errors.Uniqueness, InvalidValue: errors.InvalidValue,
    SeatCapReached: errors.Forbidden, PermissionDenied: errors.Forbidden, LastOwner: errors.Uniqueness,
    Unauthenticated: errors.Unauthorized,
}


def translate(error: DomainError) -> errors.ScimError:
    """Return the SCIM error a domain error is answered with (DOMAIN_ERRORS)."""
    for cls, scim in DOMAIN_ERRORS.items():
        if isinstance(error, cls):
            return scim(error.message)
    return errors.InvalidValue(error.message)


@bp.record_once
def _install(state: Any) -> None:
    app: Flask = state.app
    init_oauth(app)
    app.extensions["identity.error_formats"][bp.url_prefix or "/scim/v2"] = _http_error


def _http_error(error: HTTPException) -> Response:
    """Answer routing and protocol errors under /scim/v2 in SCIM's format."""
    status = error.code or 500
    if status == 500:  # Flask's own, for a failure past the handlers (it has logged it): the same bare 500
        return _internal_error()
    scim_type = getattr(error, "scim_type", "invalidSyntax") if status == 400 else None
    if status == 413:  # a body over MAX_CONTENT_LENGTH: the detail specifies the limit (RFC 7644 section 3.7.4)
        return error_response(413, None, discovery.bulk_limits() if request.path.endswith("/Bulk") else
                              f"the body is over {discovery.MAX_PAYLOAD_BYTES} bytes, the most this service reads")
    response = error_response(status, scim_type, error.description or error.name)
    response.headers.update(kept_headers(error))
    return response


def error_response(status: int, scim_type: str | None, detail: str) -> Response:
    """Return a SCIM error response (RFC 7644 section 3.12), with its 401 and 429 headers."""
    provisioning_status.remember_refusal(status, detail)
    return _error_answer(status, errors.error_body(status, scim_type, detail))


def _internal_error() -> Response:
    """The bare 500 of an unexpected failure, naming the request id (errors.internal_error)."""
    error = errors.internal_error(g.get("request_id"))
    provisioning_status.remember_refusal(error.status, errors.INTERNAL_ERROR)  # the request id is kept beside it
    return _error_answer(error.status, error.to_json())


def _outcome_unknown(error: CommitUnknown) -> Response:
    """The 500 of a connection lost at COMMIT (identity.web.transient): its detail says the change may
    have been made, to be read back (a `userName eq` filter, a GET) before it is sent again, and names
    the request id. An IdP fails the operation and finds the member at its next lookup."""
    request_id = g.get("request_id")
    transient.unknown(error, request_id)
    provisioning_status.remember_refusal(500, transient.UNKNOWN_DETAIL)  # the request id is kept beside it
    return _error_answer(500, errors.error_body(500, None, unknown_detail(request_id)))


def unknown_detail(request_id: str | None) -> str:
    """The detail of SCIM's answer to a connection lost at COMMIT, naming the request id (scim.bulk's too)."""
    return f"{transient.UNKNOWN_DETAIL}; request id {request_id}"


def _error_answer(status: int, body: dict[str, Any]) -> Response:
    response = Response(json.dumps(body), status=status, content_type=SCIM_JSON)
    if status == 401:
        response.headers["WWW-Authenticate"] = bearer_challenge("scim", request.headers.get("Authorization"))
    if status == 429:
        response.headers["Retry-After"] = "1"
    return response


@bp.errorhandler(errors.ScimError)
def _scim_error(error: errors.ScimError) -> Response:
    return error_response(error.status, error.scim_type, error.detail)


@bp.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Response:
    if isinstance(error, Unauthenticated):  # a known credential refused: its org's status says why
        provisioning_status.remember_org(error.context.get("org_id"), error.context.get("reason"))
    return _scim_error(translate(error))


@bp.errorhandler(Exception)
def _unexpected_error(error: Exception) -> Response:
    """Answer what no handler above expects (a database down among them) as SCIM's bare 500, not
    the app's own JSON (RFC 7644 section 3.12); the traceback is logged here, once, as the app's
    handler (identity.web.app), which Flask no longer asks under /scim/v2, would have."""
    if isinstance(error, HTTPException):  # Flask asks this handler before the app's one of HTTPException
        return _http_error(error)
    if isinstance(error, CommitUnknown):  # the change may have been made: a 500 saying so, never a 503 to resend
        return _outcome_unknown(error)
    kind = transient_kind(error)
    if kind is not None:  # a deadlock, SQLite's lock...: nothing written, a 503 to retry (identity.web.transient)
        return _http_error(transient.answered(kind, g.get("request_id")))
    log.exception("unhandled error")
    return _internal_error()


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
OVER_RATE_LIMIT = "rate limit exceeded; retry after the Retry-After seconds"
# The environ key under which scim.lookup_front hands over a request it has already counted against
# the rate limit (no client can set it: WSGI puts request headers under HTTP_ names).
COUNTED = "identity.scim.rate_limit_counted"


@dataclass(frozen=True)
class Counted:
    """A request counted against its org's rate limit before Flask: the credential verified, and
    whether the org was within its limit."""

    actor: Actor
    allowed: bool


def count_before_flask(environ: MutableMapping[str, Any], actor: Actor, limit: int) -> bool:
    """Count a request whose credential scim.lookup_front verified against its org's rate limit, and
    note it in `environ` so that, if handed to Flask, it is not counted again; tell whether it is within."""
    counted = Counted(actor, RATE_LIMIT.allow(actor.org_id or "", limit))
    environ[COUNTED] = counted
    return counted.allowed


def _user_lookup() -> bool:
    """A read of one user by key: `GET /Users/<id>`, or `GET /Users` with an IdP's lookup filter."""
    return request.endpoint == "scim.users_get" or (
        request.endpoint == "scim.users_list" and idp_lookups.is_lookup(idp_lookups.USERS, request.args.get("filter")))


@bp.before_request
def _authenticate() -> Response | None:
    counted: Counted | None = request.environ.get(COUNTED)
    if counted is not None and not counted.allowed:  # refused by the lookup front: nothing more to read
        _act_as(counted.actor)
        raise errors.TooManyRequests(OVER_RATE_LIMIT)
    header = request.headers.get("Authorization", "")
    # Read-only, never in a write transaction: on SQLite that takes the database's write lock, so
    # every SCIM request, reads included, would queue behind every other. A GET keeps its read
    # transaction for its handler (`context.reading`): one transaction per lookup, not two. Any
    # other method checks the credential outside a transaction (Database.point_read: one round
    # trip, not three) and changes things in a transaction of its own. The credential's
    # last-used time changes at most once a minute (identity.keys); only then is it saved, in a
    # write transaction of its own.
    database = context.database()
    stack = ExitStack()
    reads = request.method == "GET"
    session = stack.enter_context((database.looking_up() if _user_lookup() else database.reading()) if reads
                                  else database.point_read())
    try:
        presented = authenticate(session, header)
    except BaseException as error:
        # Closed with the error, so that the transaction is rolled back: a bare close() commits,
        # which after a lost connection raised PendingRollbackError in place of the error itself.
        stack.__exit__(type(error), error, error.__traceback__)
        raise
    if reads:
        context.share_read(stack, session)
    else:
        stack.close()
    if presented.use_due:
        with context.database().transaction() as writing:
            scim_credentials.note_scim_token_use(writing, presented.actor.id)
    _act_as(presented.actor)
    if not (counted.allowed if counted is not None else
            RATE_LIMIT.allow(presented.actor.org_id or "", current_app.config.get("SCIM_RATE_LIMIT", 1000))):
        raise errors.TooManyRequests(OVER_RATE_LIMIT)
    return None


def _act_as(actor: Actor) -> None:
    context.act_as(actor.with_request(g.get("request_id"), request.remote_addr, request.user_agent.string,
                                      client_request_id=g.get("client_request_id")))


@bp.teardown_request
def _end_read(_error: BaseException | None) -> None:
    context.end_shared_read()


bp.after_request(provisioning_status.note_request)


@bp.after_request
def _content_type(response: Response) -> Response:
    if response.status_code in (204, 304):  # no body: no type (not Flask's default text/html)
        response.headers.pop("Content-Type", None)
    elif response.mimetype == "application/json":
        response.content_type = SCIM_JSON
    return response
