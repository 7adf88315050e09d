"""What a path answered in front of Flask shares with the app's own answers.

Two hot paths are answered before Flask sees the request: the gateway's key check
(identity.web.keycheck) and the IdPs' user lookup (scim.lookup_front). Each answers as the app
would: the server's own request id (the client's `X-Request-Id` kept beside it when it is a plain
token), the security headers (identity.web.security_headers), the same JSON request log line and the same counters
(identity.web.app `_start_request` and `_finish_request` do this for Flask's answers). The log line
and the request's duration are taken by `finished`, once the server has sent the answer and closed
it: a streamed answer's time to answer is the time it took to send, not to its first byte.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from identity import jsontext
from identity.db import CommitUnknown, transient_kind
from identity.web import logs, metrics, transient
from identity.web import security_headers as security

log = logging.getLogger("identity.http")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
NOT_HERE = object()  # `json_body`'s answer for a body this path does not answer: Flask does
STATUS_LINE = {200: "200 OK", 401: "401 UNAUTHORIZED", 500: "500 INTERNAL SERVER ERROR",  # Werkzeug's wording
               503: "503 SERVICE UNAVAILABLE"}
SECURITY_HEADERS = [(security.CSP, security.content_security_policy()), ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


class FrontOf:
    """A WSGI app in front of Flask's for one `POST path` (no query string): it answers what it fully
    understands and hands every other request to `fallback` (the app behind it), its body unread or put back."""

    path: str

    def __init__(self, app: Any, fallback: WSGIApp) -> None:
        self.app = app
        self.fallback = fallback

    def ours(self, environ: dict[str, Any]) -> bool:
        return environ.get("PATH_INFO") == self.path and environ.get("REQUEST_METHOD") == "POST" and \
            not environ.get("QUERY_STRING")

    def dumps(self, body: dict[str, Any]) -> bytes:
        """`body` as the app's JSON provider writes it, with Flask's newline."""
        return bytes(self.app.json.dumps(body, separators=(",", ":")).encode() + b"\n")


@dataclass(frozen=True)
class Answering:
    """A request being answered in front of Flask: its ids and when it began."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_id: str | None = None
    started: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, environ: dict[str, Any]) -> Answering:
        """Start answering: a fresh request id, the client's own kept when it is a plain token."""
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        answering = cls(client_id=incoming if logs.REQUEST_ID.fullmatch(incoming) else None)
        logs.request_id.set(answering.request_id)
        return answering

    def send(self, start_response: StartResponse, method: str, route: str, status: int,
             headers: list[tuple[str, str]], data: bytes) -> Sent:
        """Send the answer with the headers every answer of the app has; it is logged and counted
        when the server closes it."""
        start_response(STATUS_LINE[status], [
            *headers, ("Content-Length", str(len(data))), ("X-Request-Id", self.request_id),
            *([("X-Client-Request-Id", self.client_id)] if self.client_id else []), *SECURITY_HEADERS])
        sent = Sent((data,))
        sent.request = (method, route, status, self.started, self.request_id, self.client_id)
        return sent

    def fail(self, start_response: StartResponse, method: str, route: str, error: Exception,
             dumps: Callable[[dict[str, Any]], bytes], extra: Iterable[tuple[str, str]] = ()) -> Sent:
        """Answer a request whose handling raised `error` as the app's own handler does: a 503 problem
        to retry for a transient conflict, a 500 problem saying the change may have been made for a
        connection lost at COMMIT, else a bare 500 (the traceback logged); with the `extra`
        headers the path's every answer has."""
        status = failed(error, self.request_id)
        if status == 503:
            body = problem_body(503, transient.CODE, transient.DETAIL, None, self.request_id)
            headers = [("Content-Type", "application/problem+json"),
                       ("Retry-After", str(transient.RETRY_AFTER_SECONDS))]
        elif isinstance(error, CommitUnknown):  # the debit may have been booked: its request_id makes a retry safe
            body = problem_body(500, transient.UNKNOWN_CODE, transient.UNKNOWN_DETAIL, None, self.request_id)
            headers = [("Content-Type", "application/problem+json")]
        else:
            body = {"error": "internal_error", "message": "internal error", "request_id": self.request_id}
            headers = [("Content-Type", "application/json")]
        return self.send(start_response, method, route, status, [*headers, *extra], dumps(body))


class Sent(list[bytes]):
    """An answer of one piece, which the server closes once it is sent (PEP 3333): then `finished`.

    A list built by list's own constructor, so that making and iterating it stay at C speed (a
    fraction of a microsecond more than a plain list); the close is the call a server makes anyway."""

    __slots__ = ("request",)
    request: tuple[str, str, int, float, str, str | None]

    def close(self) -> None:
        finished(*self.request)


def finished(method: str, route: str, status: int, started: float, request_id: str | None,
             client_id: str | None) -> None:
    """Log and count a request whose answer has been sent: the one request log line and the
    request counters (identity.web.metrics), for the app's answers and those answered in front.

    The request ends here, so its id leaves the thread's log context: a line the server writes next
    on this thread (gunicorn's warning about the next connection's bad request) is about no request."""
    seconds = time.perf_counter() - started
    log.info("request", extra={"method": method, "route": route, "status": status,
                               "duration_ms": round(seconds * 1000, 2), "request_id": request_id,
                               "client_request_id": client_id})
    metrics.observe_request(method, route, status, seconds)
    logs.request_id.set(None)


def json_body(environ: dict[str, Any], limit: int | None) -> Any:
    """The request's body parsed as JSON (identity.jsontext, as the app's own provider), when it is
    `application/json` of a declared length up to `limit`; else NOT_HERE. The body is put back for
    Flask, should it be the one to answer."""
    length = environ.get("CONTENT_LENGTH") or ""
    if not (length.isascii() and length.isdigit()) or (limit is not None and int(length) > limit) or \
            environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower() != "application/json":
        return NOT_HERE
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        return jsontext.loads(body)
    except ValueError:
        return NOT_HERE


def failed(error: Exception, request_id: str) -> int:
    """The status of an answer in front of Flask that raised `error`: 503 for a transient conflict (one
    warning line, identity.web.transient), 500 for a connection lost at COMMIT (one error line), else
    500 with its traceback logged."""
    if isinstance(error, CommitUnknown):  # one error line: the change may have been made (identity.web.transient)
        transient.unknown(error, request_id)
        return 500
    kind = transient_kind(error)
    if kind is not None:
        transient.answered(kind, request_id)
        return 503
    log.exception("unhandled error")
    return 500


def problem_body(status: int, code: str, detail: str, extra: dict[str, Any] | None,
                 request_id: str | None) -> dict[str, Any]:
    """Return an RFC 9457 problem's members (the admin API's, and those of the paths answered in front of Flask)."""
    body: dict[str, Any] = {"type": f"about:blank#{code}", "title": code.replace("_", " "), "status": status,
                            "detail": detail, "code": code, "request_id": request_id}
    body.update({key: value for key, value in (extra or {}).items() if key not in body})
    return body
