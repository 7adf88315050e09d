"""Admin API: the gateway's key check, `POST /api/v1/keys/verify` (DESIGN.md 3.7 and 8).

Authenticated with the operator's gateway credential (`Authorization: Bearer gw_...`), not an API
key: a wrong or missing one is 401. The answer is always 200 for a well-formed request, `{"valid":
true, ..., "budget": {...}}` or `{"valid": false, "reason": "unknown" | "revoked" | "blocked" |
"expired" | "balance_exhausted" | "spending_limit_reached"}` (a spend refusal also carries
`resets_at`, `scope` and `budget`: identity.gateway, DESIGN.md 3.8): the check itself succeeded, and
a gateway may cache either answer for the `Cache-Control: max-age` it carries
(`KEY_CHECK_MAX_AGE_SECONDS`, default 10).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Connection

from identity import gateway
from identity.errors import Unauthenticated
from identity.web.api.common import adopt, json_body, text
from identity.web.context import database

bp = adopt(Blueprint("api_gateway", __name__, url_prefix="/api/v1"))
DEFAULT_MAX_AGE = 10


@bp.post("/keys/verify")
def verify_key() -> Response:
    """Tell the gateway whom a key speaks for, in one read that writes nothing and locks nothing."""
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("a gateway credential is required: Authorization: Bearer gw_...")
    secret = text(json_body("key"), "key")
    with _autocommit() as conn:
        found = gateway.check_key(conn, credential.strip(), secret)
    body: dict[str, Any] = {"valid": True, **found.identity} if found.identity else {
        "valid": False, "reason": str(found.reason), **found.details}
    response = jsonify(body)
    response.headers["Cache-Control"] = f"private, max-age={max_age()}"
    return response


@contextmanager
def _autocommit() -> Iterator[Connection]:
    """A connection on which the one SELECT is its own snapshot read, with no BEGIN or COMMIT.

    On PostgreSQL that is psycopg's autocommit (the pool puts it back on return). SQLite's
    connections already run outside a transaction until the service sends BEGIN itself
    (identity.db); asking SQLAlchemy for AUTOCOMMIT there would, on return, switch the driver's
    own implicit transactions back on.
    """
    db = database()
    with db.engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT") if db.dialect == "postgresql" else conn


def max_age() -> int:
    """Return how long a gateway may cache a check's answer (`KEY_CHECK_MAX_AGE_SECONDS`)."""
    value = current_app.config.get("KEY_CHECK_MAX_AGE_SECONDS", DEFAULT_MAX_AGE)
    return max(0, int(value))


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    return {"/api/v1/keys/verify": {
        "post": op("The gateway's key check (gateway credential `gw_...`, not an API key): whom a key speaks for, "
                   "or why it is refused (`reason`: unknown, revoked, blocked, expired). Always 200 for a "
                   "well-formed request; `Cache-Control: max-age` says how long the answer may be cached",
                   json_response(ref("KeyCheck")), body="KeyCheckRequest"),
    }}
