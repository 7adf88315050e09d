"""What the admin API's blueprints share: the two ways in, problem JSON, and reading input.

Two ways in (`authenticated`): an API key in `Authorization: Bearer <api key>`, or the signed-in
browser session's cookie (identity.web.cookies) that SAML sign-in or a one-time link sets. A key
in the header wins over a cookie. A request carried by the cookie must come from our own origin
(saml.csrf's Fetch Metadata and Origin check), and a write (POST, PUT, PATCH, DELETE) must also
carry the session's synchronizer token in `X-CSRF-Token`: an HMAC under SECRET_KEY bound to the
session's token, which `GET /api/v1/session` hands to the page (OWASP's synchronizer token; a
cookie alone never authorizes a write). Errors are RFC 9457 problem JSON. Each blueprint
registers `domain_problem` with `adopt`. No answer of the API is kept by a cache (`not_stored`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Response, current_app, g, jsonify, request

from audit import Actor
from identity import jsontext, keys, outbox, sessions
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
from identity.roles import allowed_scopes
from identity.web import cookies
from identity.web.context import database
from identity.web.front import problem_body
from identity.web.http_errors import bearer_challenge
from saml import csrf

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# What every row id is (str(uuid4())): a cursor that is not one is refused, not read as a place.
STATUS = {NotFound: 404, Conflict: 409, InvalidValue: 400, PermissionDenied: 403, LastOwner: 409,
          SeatCapReached: 403, Unauthenticated: 401, outbox.MailCapReached: 429}
ADMIN = "admin"  # the key scope the admin API asks for
# Reads of spend and wallets: a key made to read usage (`usage.read`, e.g. a team's reporting job) or an admin key.
USAGE_READ = ("usage.read", ADMIN)
# Reads of members and teams (DESIGN 3.2: every role): a session of any role, a `directory.read` key, an admin key.
DIRECTORY_READ = ("directory.read", ADMIN)
KEY, SESSION = "key", "session"  # the two ways in
CSRF_HEADER = "X-CSRF-Token"
CSRF_PURPOSE = "api"  # the synchronizer token's purpose (saml.csrf): distinct from the sign-out form's
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# app.extensions' key of (document path, method) -> the query parameters the operation declares.
QUERY_PARAMETERS = "identity.query_parameters"


class CsrfRefused(PermissionDenied):
    """A cookie-carried request from another site, or a cookie-carried write without the session's token."""

    code = "csrf_refused"


@dataclass(frozen=True)
class Caller:
    """Who calls the admin API and through which way in (`KEY` or `SESSION`).

    It has KeyIdentity's names (org_id, org_slug, user_id, team_id, role, scopes...) and is also
    `g.key`, so that a view reads the caller's org and member the same whichever way it came in.
    A session has no key id; its team is the member's default team (None when they have none);
    its scopes are those its holder's role allows (identity.roles.allowed_scopes), as a key's are
    capped.
    """

    way: str
    actor: Actor
    org_id: str
    org_slug: str
    user_id: str | None  # None: a team service key (its team's, no member's; user_name is its name)
    user_name: str
    role: str
    scopes: tuple[str, ...]
    team_id: str | None = None
    team_role: str | None = None
    key_id: str | None = None

    @classmethod
    def of_key(cls, key: keys.KeyIdentity) -> Caller:
        return cls(KEY, key.actor(), key.org_id, key.org_slug, key.user_id, key.user_name, key.role, key.scopes,
                   key.team_id, key.team_role, key.key_id)

    @classmethod
    def of_session(cls, found: sessions.SessionIdentity) -> Caller:
        return cls(SESSION, found.actor(), found.org_id, found.org_slug, found.user_id, found.user_name, found.role,
                   tuple(sorted(allowed_scopes(found.role))), found.team_id)


def domain_problem(error: DomainError) -> Response:
    """Render a domain error as problem JSON with the status of its kind (shared by the API blueprints)."""
    status = next((code for cls, code in STATUS.items() if isinstance(error, cls)), 400)
    response = problem(status, error.code, error.message, {k: v for k, v in error.context.items() if k != "org_id"})
    if isinstance(error.context.get("retry_after_seconds"), int):  # a rate limit's (RFC 9110 section 10.2.3)
        response.headers["Retry-After"] = str(error.context["retry_after_seconds"])
    return response


def problem(status: int, code: str, detail: str, extra: dict[str, Any] | None = None) -> Response:
    """Return an RFC 9457 problem response; `extra` members never replace the standard ones."""
    response = jsonify(problem_body(status, code, detail, extra, g.get("request_id")))
    response.status_code = status
    response.content_type = "application/problem+json"
    if status == 401:
        response.headers["WWW-Authenticate"] = bearer_challenge("identity", request.headers.get("Authorization"))
    return response


def adopt(bp: Blueprint) -> Blueprint:
    """Give an admin API blueprint the API's problem JSON for domain errors, refuse, before any
    view reads or writes, a query parameter its operation does not declare in the OpenAPI document
    (`declared_query`), and mark its answers `not_stored`. (NUL and lone surrogates in its paths
    and queries are refused before it: identity.web.unstorable.)"""
    bp.register_error_handler(DomainError, domain_problem)
    bp.before_request(declared_query)
    bp.after_request(not_stored)
    return bp


NOT_STORED = ("Cache-Control", "no-store")


def not_stored(response: Response) -> Response:
    """Mark an admin API answer `Cache-Control: no-store`, unless its view set its own (the key
    check's `private, max-age`, which a gateway is meant to keep).

    Several answers carry a live secret (a new key or SCIM token, an invitation's link, the
    outbox's undelivered links, the session's CSRF token) and all of them an org's private data:
    a browser's disk cache or a caching proxy must keep none. One rule for every operation, so
    that an answer added later cannot forget it; the answers given in front of Flask for the same
    paths (identity.web.keycheck, identity.web.usage_front) send it too."""
    response.headers.setdefault(*NOT_STORED)
    return response


def document_path(rule: str) -> str:
    """Return the OpenAPI document's path of a URL rule: `/orgs/<org_ref>/members/<user_id>` is
    `/orgs/{org}/members/{user_id}`."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule).replace("{org_ref}", "{org}")


def declared_query() -> None:
    """Refuse a query parameter the operation's entry in the OpenAPI document does not declare
    (`QUERY_PARAMETERS`, put in the app by its factory from identity.web.openapi): a misspelt filter
    must not widen a read, nor a `?dry_run=true` make a removal look like a preview. One check for
    every operation, so that none can forget it."""
    if not request.args:
        return
    method = "GET" if request.method == "HEAD" else request.method
    rule = request.url_rule.rule if request.url_rule is not None else ""
    declared = current_app.extensions[QUERY_PARAMETERS].get((document_path(rule), method), frozenset())
    unknown = sorted(set(request.args) - declared)
    if unknown:
        raise InvalidValue(f"unknown query parameters: {', '.join(map(repr, unknown))}", field=unknown[0])


def request_actor(actor: Actor) -> Actor:
    """Return `actor` carrying this request's context (ids, address, user agent)."""
    return actor.with_request(g.request_id, request.remote_addr, request.user_agent.string,
                              client_request_id=g.get("client_request_id"))


def authenticated(*, scope: str | tuple[str, ...] | None,
                  ways: tuple[str, ...] = (KEY, SESSION)) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Require a caller by one of `ways` (an API key, the browser session) holding `scope` (one of
    them, for a tuple; None: any, for the routes that answer whom a credential speaks for).

    Puts the caller in `g.caller` (and `g.key`, the name views used before sessions), its actor
    in `g.actor`: the key's, or for a session the user themself (audited as type `user`).
    """
    wanted = (scope,) if isinstance(scope, str) else scope or ()

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            caller = _key_caller(ways) if "Authorization" in request.headers else _session_caller(ways)
            if scope is not None and not set(wanted).intersection(caller.scopes):
                raise PermissionDenied(f"this {caller.way} has no {' or '.join(map(repr, wanted))} scope "
                                       "for the admin API")
            g.caller = g.key = caller
            g.actor = request_actor(caller.actor)
            return view(*args, **kwargs)
        return wrapper
    return decorate


def _key_caller(ways: tuple[str, ...]) -> Caller:
    """The caller of the API key in the Authorization header: a key present wins over any cookie."""
    kind, _, secret = request.headers.get("Authorization", "").partition(" ")
    if KEY not in ways:
        raise Unauthenticated("this operation takes the signed-in browser session, not an API key")
    if kind.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>")
    with database().transaction() as session:
        return Caller.of_key(keys.verify_api_key(session, secret.strip()))


def session_token() -> str | None:
    """Return the browser session's token from its signed cookie, or None."""
    return cookies.token_of(current_app.config["SECRET_KEY"], request.cookies.get(cookies.COOKIE))


def csrf_token(token: str) -> str:
    """Return the synchronizer token of the browser session whose token is `token`."""
    return csrf.token(current_app.config["SECRET_KEY"], CSRF_PURPOSE, token)


def _session_caller(ways: tuple[str, ...]) -> Caller:
    """The caller of the session cookie, after the CSRF checks (made before the session is read or touched)."""
    token = session_token()
    if SESSION not in ways or token is None:
        raise Unauthenticated("an API key is required: Authorization: Bearer <key>" if SESSION not in ways else
                              "an API key (Authorization: Bearer <key>) or a signed-in session is required")
    if not csrf.same_origin(str(current_app.config["BASE_URL"]), request.headers):
        raise CsrfRefused("a request from another site may not use the session cookie")
    if request.method not in SAFE_METHODS and not csrf.valid(
            current_app.config["SECRET_KEY"], CSRF_PURPOSE, token, request.headers.get(CSRF_HEADER)):
        raise CsrfRefused(f"a write with the session cookie needs the session's {CSRF_HEADER} header "
                          "(csrf_token of GET /api/v1/session)")
    with database().transaction() as session:
        return Caller.of_session(sessions.verify_session(session, token, cookies.lifetime(current_app.config)))


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
    where = jsontext.unstorable_at(data)
    if where is not None:  # no database stores them
        raise InvalidValue("strings must not contain NUL characters or unpaired surrogates", field=where)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise InvalidValue(f"unknown fields: {', '.join(map(repr, unknown))}", field=unknown[0])
    return data


def text(data: dict[str, Any], name: str, default: str = "") -> str:
    """Return the string member `name` (else `default`); any other JSON type is refused, not coerced."""
    value = data.get(name, default)
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string", field=name)
    return value


def optional_text(data: dict[str, Any], name: str) -> str | None:
    """Return the string member `name`, or None when it is absent or null."""
    return None if data.get(name) is None else text(data, name)


ROLES = ("owner", "admin", "member", "viewer", "developer")  # the document's enum (identity.web.openapi.ROLE)


def role(data: dict[str, Any]) -> str | None:
    """Return the `role` member: absent or null means the default; anything but one of the document's
    roles, exactly as it spells them, is refused (never lower-cased or stripped into one). Which of
    them a given change takes (a team role is never owner) is the domain's to say."""
    found = optional_text(data, "role")
    if found is not None and found not in ROLES:
        raise InvalidValue(f"role must be one of {', '.join(ROLES)}", field="role")
    return found


def caller_org_id(org_ref: str) -> str:
    """Resolve an org id or slug within the caller's own org; any other org is not found."""
    if org_ref not in (g.key.org_id, g.key.org_slug):
        raise NotFound(f"no org {org_ref!r}")
    org_id: str = g.key.org_id
    return org_id


def when(moment: Any) -> str | None:
    """Render an optional time as ISO 8601."""
    return None if moment is None else moment.isoformat()
