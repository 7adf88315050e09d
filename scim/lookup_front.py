"""The IdPs' user lookup served in front of Flask: `GET /scim/v2/Users?filter=userName eq "..."` (issue 19).

Okta sends this before every create and on every sync, Entra its `externalId eq` (scim.idp_lookups
names the forms), so the lookup's own path skips what Flask spends on each request, as the
gateway's key check does (identity.web.keycheck; docs/performance.md, "The lookup in front of
Flask"). It is the same lookup as the view's (scim.user_views.users_list): the same query
parameters read by scim.listing.read_query, the same credential check in the same read transaction
(scim_credentials.verify_scim_token on Database.looking_up), the same statement
(scim.idp_lookups.find), the same page (scim.user_views.users_page), the same rate limit and
provisioning status, and the same headers, log line and counters (identity.web.front).

It answers only a lookup it fully understands and that the view would answer 200 without writing
anything: `GET` of exactly that path, with no body; a query string of `filter` and optionally `startIndex`,
`count`, `attributes` and `excludedAttributes`, each once, valid UTF-8, free of what no request
may carry (identity.jsontext.UNSTORABLE); a filter that is one of the IdPs' lookup forms; a SCIM
token (`Bearer scim_...`) that verifies and whose last-used time is not due to be saved; an org
within its rate limit (asked once the token verifies, before the user is read); a page that tells
its total. Anything else goes to Flask untouched, which reads it again and gives every other
answer (a refusal, an OAuth access token, a saved last-used time, a full page counted) as the view
always has; a request the front has counted against the rate limit is handed over with its count
(scim.web.COUNTED), so that it is counted once and, when refused, answered 429 with nothing more
read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask

from identity import jsontext, provisioning_log, scim_credentials
from identity.provisioning_log import Attempt
from identity.web.context import EXTENSION
from identity.web.front import Answering, StartResponse, WSGIApp
from scim import context, idp_lookups, listing, provisioning_status, user_views
from scim.errors import ScimError
from scim.streaming import SCIM_JSON
from scim.web import count_before_flask

PATH = "/scim/v2/Users"
PARAMETERS = frozenset({"filter", "startindex", "count", "attributes", "excludedattributes"})
BEARER = "bearer scim_"


class LookupFirst:
    """A WSGI app that answers the IdPs' user lookups itself and hands every other request to `fallback`."""

    def __init__(self, app: Flask, fallback: WSGIApp) -> None:
        self.app = app
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET" or \
                environ.get("CONTENT_LENGTH", "0") not in ("", "0") or "HTTP_TRANSFER_ENCODING" in environ:
            return self.fallback(environ, start_response)  # a GET with a body: Flask reads (and drains) it
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        query = _query(environ.get("QUERY_STRING", ""))
        if query is None or authorization[:len(BEARER)].lower() != BEARER:
            return self.fallback(environ, start_response)
        answering = Answering.begin(environ)
        try:
            body = self._answer(environ, authorization[len("bearer "):].strip(), query, answering.request_id)
        except Exception:  # a refusal (the view words it), or a failure the view meets again and logs
            body = None
        if body is None:
            return self.fallback(environ, start_response)
        data = json.dumps(body).encode()
        return answering.send(start_response, "GET", PATH, 200, [("Content-Type", SCIM_JSON)], data)

    def _answer(self, environ: dict[str, Any], secret: str, query: listing.Query,
                request_id: str) -> dict[str, Any] | None:
        """The page the view would answer, or None where the view must answer (and may write)."""
        database = self.app.extensions[EXTENSION]
        with database.lookup_connection() as conn:
            presented = scim_credentials.verify_scim_token(conn, secret)
            actor = presented.actor
            org_id = actor.org_id or ""
            if presented.use_due or not count_before_flask(environ, actor,
                                                           self.app.config.get("SCIM_RATE_LIMIT", 1000)):
                return None  # the view saves the last-used time, or answers 429
            found = idp_lookups.find_users_with_groups(conn, org_id, query)
        if found is None:
            return None
        total, rows = found
        memberships = {row.id: [(gid, name) for gid, name in row.groups_of or ()] for row in rows}
        body = user_views.users_page(query, total, rows, memberships, context.base_url_of(self.app.config))
        provisioning_log.keep(database, provisioning_status.THROTTLE, org_id,
                              Attempt("scim", "GET", PATH, 200, None, actor.display, request_id))
        return body


def _query(raw: str) -> listing.Query | None:
    """The query string's list parameters when they are all this path takes, each once, with a
    lookup filter; else None. Read as Werkzeug reads `request.args` (UTF-8, blank values kept)."""
    try:
        pairs = parse_qsl(raw.encode("latin1").decode(), keep_blank_values=True, errors="strict")
    except UnicodeError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or len({k.lower() for k in params}) != len(params) or \
            not {k.lower() for k in params} <= PARAMETERS or \
            any(jsontext.UNSTORABLE.search(k) or jsontext.UNSTORABLE.search(v) for k, v in pairs):
        return None
    try:
        query = listing.read_query(params)
    except ScimError:  # the view words it
        return None
    return query if idp_lookups.is_lookup(idp_lookups.USERS, query.filter) else None
