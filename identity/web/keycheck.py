"""The gateway's key check served in front of Flask: `POST /api/v1/keys/verify` (issue 16).

Every LLM request the gateway forwards costs one check, so the check's own path skips what Flask
spends on each request (the request context, URL matching, before/after hooks, the response
object): a profile put that at half of the check's CPU (docs/performance.md). It is the same
check as the Flask view's (identity.web.api.gateway): the same gateway credential, the same domain
call (identity.gateway.check_key) and answer (`answer`), the same problem JSON for a 401, the same
headers (`Cache-Control: private, max-age`, a refusal's `no-store`, `X-Request-Id`, the client's
`X-Client-Request-Id`, the security headers of identity.web.security_headers), the same JSON request
log line and the same counters.

Only a request it fully understands is answered here: `POST` to exactly that path, no query
string, a JSON body (`application/json`) of at most MAX_CONTENT_LENGTH bytes that is an object
with no member but a string `key` free of NUL. Anything else (another method, a missing or
oversized length, a body that is not such an object) goes to Flask whole, with the body it sent,
so every refusal (400, 405, 413) stays Flask's and the API's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask

from identity import gateway, jsontext
from identity.errors import Unauthenticated
from identity.web import metrics
from identity.web.api.common import NOT_STORED
from identity.web.api.gateway import CREDENTIAL_REQUIRED, answer, autocommit, cache_control, code_of
from identity.web.context import EXTENSION
from identity.web.front import Answering, FrontOf, StartResponse, json_body, problem_body
from identity.web.http_errors import bearer_challenge

PATH = "/api/v1/keys/verify"


class KeyCheckFirst(FrontOf):
    """A WSGI app that answers the key check itself and hands every other request to `fallback`."""

    path = PATH
    app: Flask

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not self.ours(environ):
            return self.fallback(environ, start_response)
        secret = self._secret(environ)
        if secret is None:
            return self.fallback(environ, start_response)
        return self._check(environ, start_response, secret)

    def _secret(self, environ: dict[str, Any]) -> str | None:
        """Return the body's `key` when the body is one this path answers; else None (the body restored)."""
        data = json_body(environ, self.app.config.get("MAX_CONTENT_LENGTH"))
        if type(data) is not dict or data.keys() != {"key"}:
            return None  # a missing key, or another member: Flask's view words the 400
        secret = data["key"]
        return secret if type(secret) is str and not jsontext.UNSTORABLE.search(secret) else None

    def _check(self, environ: dict[str, Any], start_response: StartResponse, secret: str) -> Iterable[bytes]:
        answering = Answering.begin(environ)
        try:
            status, body, code = self._answer(environ.get("HTTP_AUTHORIZATION", ""), secret, answering.request_id)
        except Exception as error:
            return answering.fail(start_response, "POST", PATH, error, self.dumps, [NOT_STORED])
        headers = [("Content-Type", "application/problem+json" if status == 401 else "application/json")]
        if status == 200:
            headers.append(("Cache-Control", cache_control(self.app.config)))
        else:
            challenge = bearer_challenge("identity", environ.get("HTTP_AUTHORIZATION"))
            headers += [("WWW-Authenticate", challenge), NOT_STORED]
        sent = answering.send(start_response, "POST", PATH, status, headers, self.dumps(body))
        metrics.observe_key_check(code)
        return sent
    def _answer(self, authorization: str, secret: str, request_id: str) -> tuple[int, dict[str, Any], str]:
        kind, _, credential = authorization.partition(" ")
        try:
            if kind.lower() != "bearer" or not credential.strip():
                raise Unauthenticated(CREDENTIAL_REQUIRED)
            with autocommit(self.app.extensions[EXTENSION]) as conn:
                found = gateway.check_key(conn, credential.strip(), secret)
        except Unauthenticated as error:
            extra = {k: v for k, v in error.context.items() if k != "org_id"}
            return 401, problem_body(401, error.code, error.message, extra, request_id), "unauthenticated"
        return 200, answer(found), code_of(found)

