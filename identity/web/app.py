"""The Flask app factory: config, database, request ids, JSON logs, blueprints, /healthz."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from flask.sessions import SessionInterface
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response as HttpResponse

import saml
import scim
from identity import config
from identity.db import CommitUnknown, Database, transient_kind
from identity.web import (
    base_path,
    console,
    front,
    logs,
    metrics_views,
    openapi,
    security_headers,
    transient,
    unstorable,
)
from identity.web.api import (
    audit_log,
    browser,
    gateway,
    invitations,
    keys,
    members,
    org,
    settings,
    sso,
    teams,
    usage,
    wallets,
)
from identity.web.api.common import QUERY_PARAMETERS, problem
from identity.web.context import EXTENSION, database
from identity.web.http_errors import kept_headers
from identity.web.jsonprovider import StrictJSONProvider
from identity.web.keycheck import KeyCheckFirst
from identity.web.unread_body import DrainUnreadBody
from identity.web.usage_front import UsageFirst
from saml import web as saml_web
from scim.lookup_front import LookupFirst

log = logging.getLogger("identity.http")
REQUEST_ID = logs.REQUEST_ID
# The response header that echoes a client's own X-Request-Id (X-Request-Id is the server's).
CLIENT_REQUEST_ID = "X-Client-Request-Id"


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, or from `test_config` where it says otherwise."""
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.session_interface = _NoFlaskSession()
    app.config.update(MAX_CONTENT_LENGTH=config.MAX_BODY_BYTES, BASE_URL=config.base_url())
    app.config.update(config.from_environment() if test_config is None else test_config)
    app.config["BASE_URL"] = config.checked_base_url(str(app.config["BASE_URL"]))  # a test's too
    logs.configure()
    app.extensions[EXTENSION] = app.config.get("DATABASE") or Database(app.config["DATABASE_URL"])
    # On SQLite: every process serving this app checkpoints the WAL in the background, from its
    # first write on (identity.db_sqlite.WalCheckpointer).
    app.extensions[EXTENSION].start_background_work()
    app.before_request(_start_request)
    app.before_request(unstorable.refuse_unstorable)  # before any blueprint's own checks and reads
    app.after_request(_finish_request)
    app.after_request(security_headers.secure)  # every response of the app
    app.after_request(base_path.prefixed_location)  # a redirect to one of our paths, under BASE_URL's path
    app.register_error_handler(Exception, _unexpected_error)
    # Path prefix -> renderer of HTTP errors (404, 405, 413...) in that protocol's own format.
    app.extensions["identity.error_formats"] = {"/api/": _problem_for_http_error, "/console/": console.http_error}
    app.register_error_handler(HTTPException, _http_error)
    app.extensions[QUERY_PARAMETERS] = openapi.query_parameters()  # the admin API refuses any other
    app.add_url_rule("/healthz", "healthz", healthz)
    app.wsgi_app = DrainUnreadBody(app.wsgi_app)  # type: ignore[method-assign]  # a refusal keeps the connection
    for blueprint in (browser.bp, keys.bp, gateway.bp, members.bp, teams.bp, settings.bp, invitations.bp,
                      audit_log.bp, sso.bp, org.bp, openapi.bp, scim.bp, saml.bp, usage.bp, wallets.bp,
                      *console.PAGES):
        app.register_blueprint(blueprint)
    metrics_views.init_app(app)
    # The hot paths are answered before Flask: the IdPs' user lookups, sent before every create and
    # on every sync (scim.lookup_front), and the gateway's key check and usage of one record, on every
    # LLM request (identity.web.keycheck, identity.web.usage_front).
    app.wsgi_app = UsageFirst(app, app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = LookupFirst(app, app.wsgi_app)  # type: ignore[method-assign]
    app.wsgi_app = KeyCheckFirst(app, app.wsgi_app)  # type: ignore[method-assign]
    _serve_under_base_path(app)
    if config.is_https(app.config["BASE_URL"]):  # every answer, those above and the base path's own included
        app.wsgi_app = security_headers.StrictTransport(app.wsgi_app)  # type: ignore[method-assign]
    _trust_proxies(app, int(app.config.get("TRUSTED_PROXY_HOPS", 0)))
    return app


def _serve_under_base_path(app: Flask) -> None:
    """Served under BASE_URL's path (a proxy passing `/identity/...` on unchanged), around every part that
    reads the path, so that the paths answered in front of Flask match theirs under it too
    (identity.web.base_path); inside StrictTransport, so that its 404 outside the path and its redirect
    of the path itself carry HSTS as every other answer does. Without a path too: SCRIPT_NAME is then
    "", whatever a server took from a request header."""
    prefix = config.path_under(str(app.config["BASE_URL"]), "")
    app.wsgi_app = base_path.UnderBasePath(prefix, app.wsgi_app)  # type: ignore[method-assign]


def _trust_proxies(app: Flask, hops: int) -> None:
    """Behind `hops` proxies (DESIGN.md 7: app processes behind a load balancer), take the client's
    address from X-Forwarded-For, outermost so that every part of the app sees the same one
    (identity.config.trusted_proxy_hops). Only the address: URLs and the scheme come from
    BASE_URL, never from a Host or X-Forwarded-Proto header."""
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0, x_port=0,  # type: ignore[method-assign]
                                x_prefix=0)


class _NoFlaskSession(SessionInterface):
    """Flask's signed-cookie session, switched off: nothing here uses `flask.session`.

    Browser sessions are this service's own (identity.sessions: a random token in a cookie, the
    database keeping its hash; identity.web.cookies), and the SAML request binding has its own cookie (saml.binding).
    Flask would otherwise build a signing serializer and look for its cookie on every request,
    SCIM included; `flask.session` is now Flask's NullSession, which refuses writes.
    """

    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Response) -> None:
        return None


def _start_request() -> None:
    # The request id is always the server's own, so that no client can make two audit events
    # share one or pin an event on somebody else's request. A client's `X-Request-Id` (when it is
    # a plain token) is kept beside it: in the audit event, the log line and a response header.
    incoming = request.headers.get("X-Request-Id", "")
    g.request_id = uuid.uuid4().hex
    g.client_request_id = incoming if REQUEST_ID.fullmatch(incoming) else None
    g.started = time.perf_counter()
    logs.request_id.set(g.request_id)


def route() -> str:
    """Return what the log says of the request's path: its URL rule (`/login/link/<token>`), never
    the path itself, which can carry a secret (a sign-in link's token); `-` when no rule matched."""
    rule = request.url_rule
    return rule.rule if rule is not None else "-"


def _finish_request(response: Response) -> Response:
    response.headers["X-Request-Id"] = g.get("request_id", "")
    client_id = g.get("client_request_id")
    if client_id:
        response.headers[CLIENT_REQUEST_ID] = client_id
    # Logged and counted once the server has sent the answer and closed it (identity.web.front):
    # a streamed answer (an audit export, a big group's members) is read and sent after this hook.
    # A file the server sends by itself (direct passthrough: /static) is never closed through the
    # response, so it is logged now, its headers ready and its bytes to go.
    done = functools.partial(front.finished, request.method, route(), response.status_code,
                             g.get("started") or time.perf_counter(), g.get("request_id"), client_id)
    if response.direct_passthrough:
        done()
    else:
        response.call_on_close(done)
    return response


def _http_error(error: HTTPException) -> Response | HTTPException:
    formats = current_app.extensions["identity.error_formats"]
    render = next((fn for prefix, fn in formats.items() if request.path.startswith(prefix)), None)
    return error if render is None else render(error)


def _problem_for_http_error(error: HTTPException) -> Response:
    status = error.code or 500
    code = getattr(error, "problem_code", None) or (error.name or "error").lower().replace(" ", "_")
    response = problem(status, code, error.description or error.name)
    response.headers.update(kept_headers(error))
    return response


def _unexpected_error(error: Exception) -> Response | HttpResponse | HTTPException:
    if isinstance(error, HTTPException):
        return error
    if isinstance(error, CommitUnknown):
        return _outcome_unknown(error)
    kind = transient_kind(error)
    if kind is not None:
        return _transient_conflict(kind)
    log.exception("unhandled error")
    response = jsonify({"error": "internal_error", "message": "internal error", "request_id": g.get("request_id")})
    response.status_code = 500
    return response


def _transient_conflict(kind: str) -> Response | HttpResponse:
    """Answer a transient database conflict (identity.web.transient) as a 503 in the format of the
    request's door: problem JSON under /api/, SCIM's under /scim/v2 (for what its own handler does
    not see), else a plain page as the SAML pages' refusals (the console's, the sign-in pages)."""
    error = transient.answered(kind, g.get("request_id"))
    answer = _http_error(error)
    if isinstance(answer, HTTPException):  # no format of its own: a person's page
        page = saml_web.page(503, "Please try again", transient.PAGE_MESSAGE)
        page.headers.update(kept_headers(error))
        return page
    return answer


def _outcome_unknown(error: CommitUnknown) -> Response | HttpResponse:
    """Answer a connection lost at COMMIT (identity.web.transient: the change may have been made) as a
    500 in the format of the request's door: problem JSON under /api/ (its request_id member), SCIM's
    under /scim/v2 (its bare 500 naming the request id), else a plain page saying to check first."""
    answer = _http_error(transient.unknown(error, g.get("request_id")))
    if isinstance(answer, HTTPException):  # no format of its own: a person's page
        return saml_web.page(500, "Your change may have been saved", transient.UNKNOWN_PAGE_MESSAGE)
    return answer


def healthz() -> tuple[Response, int]:
    """Answer 200 when the database answers, 503 otherwise."""
    try:
        database().answers()
    except Exception:  # any database failure is "unhealthy", and is logged
        log.exception("health check failed")
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    return jsonify({"status": "ok", "database": "ok"}), 200
