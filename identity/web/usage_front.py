"""The gateway's usage of one record served in front of Flask: `POST /api/v1/usage` (issue 18).

The gateway posts one record per model request it forwards. The debit itself is the domain's
(identity.usage_quick: two statements on PostgreSQL, on the driver's cursor on both databases); this
path spares it what Flask spends on a request, as the key check's does (identity.web.keycheck). It
answers only what it fully understands, a debit the wallet covers, with the Flask view's answer (identity.web.api.usage
`outcome_json`: the same JSON, `Content-Type`, `X-Request-Id`, the client's `X-Client-Request-Id`,
the security headers, the one request log line and the counters). Anything else goes to Flask whole,
with the body it sent: another method or path, a query string, a body that is not exactly one
record of well-typed fields (Flask's view words the 400), and every debit `quick_debit` leaves to the
full path (a wrong credential, an unknown key, a duplicate, a refusal, limits, an auto top-up),
having written nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask

from identity import jsontext, usage, usage_quick
from identity.errors import DomainError
from identity.web.api.common import NOT_STORED
from identity.web.api.usage import outcome_json
from identity.web.context import EXTENSION
from identity.web.front import Answering, FrontOf, StartResponse, json_body

PATH = "/api/v1/usage"
FIELDS = {"key_id", "model", "cost_micros", "request_id"}


class UsageFirst(FrontOf):
    """A WSGI app that answers a one-record debit itself when it can and hands every other request to `fallback`."""

    path = PATH
    app: Flask

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.ours(environ):
            return self.fallback(environ, start_response)
        kind, _, credential = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        record = self._record(environ) if kind.lower() == "bearer" and credential.strip() else None
        if record is None:
            return self.fallback(environ, start_response)
        answering = Answering.begin(environ)
        caller = usage_quick.Caller(answering.request_id, environ.get("REMOTE_ADDR"),
                                    environ.get("HTTP_USER_AGENT", ""), answering.client_id)
        try:
            outcome = usage_quick.quick_debit(self.app.extensions[EXTENSION], credential.strip(), record, caller)
        except Exception as error:
            return answering.fail(start_response, "POST", PATH, error, self.dumps, [NOT_STORED])
        if outcome is None:
            return self.fallback(environ, start_response)
        return answering.send(start_response, "POST", PATH, 200, [("Content-Type", "application/json"), NOT_STORED],
                              self.dumps(outcome_json(outcome)))

    def _record(self, environ: dict[str, Any]) -> usage.UsageRecord | None:
        """The body's one record when it is exactly one well-formed record; else None (the body restored)."""
        data = json_body(environ, self.app.config.get("MAX_CONTENT_LENGTH"))
        if type(data) is not dict or data.keys() != FIELDS or any(
                type(value) is str and jsontext.UNSTORABLE.search(value) for value in data.values()):
            return None  # a NUL or a lone surrogate: Flask's JSON reading words the 400
        try:
            return usage.parse_records([data], batch=False)[0]
        except DomainError:
            return None

