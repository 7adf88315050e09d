"""What each protocol's own rendering of a routing or HTTP error (werkzeug's HTTPException) keeps of it."""

from __future__ import annotations

from werkzeug.exceptions import HTTPException


def kept_headers(error: HTTPException) -> list[tuple[str, str]]:
    """Return the headers `error` carries, less the Content-Type of its HTML body: a 405's `Allow`
    (RFC 9110 section 15.5.6: "MUST generate an Allow header field in a 405 response")."""
    return [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]


def bearer_challenge(realm: str, authorization: str | None) -> str:
    """Return the `WWW-Authenticate` value of a 401 for a bearer credential (RFC 6750 section 3):
    `error="invalid_token"` when the request sent a bearer token that did not verify (3.1), none when
    it sent none or another scheme (it "lacks any authentication information" of this kind: "SHOULD NOT
    include an error code")."""
    challenge = f'Bearer realm="{realm}"'
    scheme, _, token = (authorization or "").strip().partition(" ")
    sent_a_token = scheme.lower() == "bearer" and bool(token.strip())
    return f'{challenge}, error="invalid_token"' if sent_a_token else challenge
