"""What each protocol's own rendering of a routing or HTTP error (werkzeug's HTTPException) keeps of it."""

from __future__ import annotations

from werkzeug.exceptions import HTTPException


def kept_headers(error: HTTPException) -> list[tuple[str, str]]:
    """Return the headers `error` carries, less the Content-Type of its HTML body: a 405's `Allow`
    (RFC 9110 section 15.5.6: "MUST generate an Allow header field in a 405 response")."""
    return [(name, value) for name, value in error.get_headers() if name.lower() != "content-type"]
