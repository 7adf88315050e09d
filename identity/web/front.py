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

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from identity.web import logs, metrics
from identity.web import security_headers as security

log = logging.getLogger("identity.http")
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
STATUS_LINE = {200: "200 OK", 401: "401 UNAUTHORIZED", 500: "500 INTERNAL SERVER ERROR",  # Werkzeug's wording
               503: "503 SERVICE UNAVAILABLE"}
SECURITY_HEADERS = [(security.CSP, security.content_security_policy()), ("X-Frame-Options", "DENY"),
                    ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer")]


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
    request counters (identity.web.metrics), for the app's answers and those answered in front."""
    seconds = time.perf_counter() - started
    log.info("request", extra={"method": method, "route": route, "status": status,
                               "duration_ms": round(seconds * 1000, 2), "request_id": request_id,
                               "client_request_id": client_id})
    metrics.observe_request(method, route, status, seconds)
