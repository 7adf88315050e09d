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
read. A failure (the database down or hung) is not handed over, to be met again after a second
connect timeout: the front answers it as the view would, with SCIM's bare 500 naming the request
id (scim.errors.internal_error), the traceback logged once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask

from audit import Actor
from identity import jsontext, provisioning_log, scim_credentials
from identity.db import transient_kind
from identity.errors import DomainError
from identity.provisioning_log import Attempt
from identity.web import transient
from identity.web.context import EXTENSION
from identity.web.front import Answering, StartResponse, WSGIApp, log
from scim import context, errors, idp_lookups, listing, provisioning_status, user_views
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
        answer = self._answer(environ, authorization[len("bearer "):].strip(), query, answering.request_id)
        if answer is None:
            return self.fallback(environ, start_response)
        status, body = answer
        data = json.dumps(body).encode()
        retry = [("Retry-After", str(transient.RETRY_AFTER_SECONDS))] if status == 503 else []
        return answering.send(start_response, "GET", PATH, status, [("Content-Type", SCIM_JSON), *retry], data)

    def _answer(self, environ: dict[str, Any], secret: str, query: listing.Query,
                request_id: str) -> tuple[int, dict[str, Any]] | None:
        """The view's answer: the page (200) or, on a failure, its bare 500; None where the view must
        answer (a refusal, a write, a page it counts)."""
        actor: Actor | None = None
        try:
            with self.app.extensions[EXTENSION].lookup_connection() as conn:
                presented = scim_credentials.verify_scim_token(conn, secret)
                actor = presented.actor
                if presented.use_due or not count_before_flask(environ, actor,
                                                               self.app.config.get("SCIM_RATE_LIMIT", 1000)):
                    return None  # the view saves the last-used time, or answers 429
                found = idp_lookups.find_users_with_groups(conn, actor.org_id or "", query)
            answer = None if found is None else (200, self._page(query, *found))
        except (DomainError, ScimError):  # a refusal (a token refused): the view words it and keeps its reason
            return None
        except Exception as error:  # as the view's handler (scim.web): a transient conflict a 503 to retry,
            kind = transient_kind(error)  # anything else logged once, a bare 500 naming the request id
            if kind is not None:
                transient.answered(kind, request_id)
                answer = 503, errors.error_body(503, None, transient.DETAIL)
            else:
                log.exception("unhandled error")
                answer = 500, errors.internal_error(request_id).to_json()
        if answer is not None and actor is not None:
            self._keep(actor, answer[0], request_id)
        return answer

    def _page(self, query: listing.Query, total: int, rows: list[Any]) -> dict[str, Any]:
        memberships = {row.id: [(gid, name) for gid, name in row.groups_of or ()] for row in rows}
        return user_views.users_page(query, total, rows, memberships, context.base_url_of(self.app.config))

    def _keep(self, actor: Actor, status: int, request_id: str) -> None:
        """Keep the answer in the org's provisioning status, as the view's hook would (scim.provisioning_status)."""
        reason = {500: errors.INTERNAL_ERROR, 503: transient.DETAIL}.get(status)  # as scim.web's refusals
        provisioning_log.keep(self.app.extensions[EXTENSION], provisioning_status.THROTTLE, actor.org_id or "",
                              Attempt("scim", "GET", PATH, status, reason, actor.display, request_id))


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
