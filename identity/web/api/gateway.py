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

import dataclasses
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Connection

from identity import gateway
from identity.db import Database
from identity.errors import InvalidValue, Unauthenticated
from identity.web import metrics
from identity.web.api.common import adopt, json_body, text
from identity.web.context import database

bp = adopt(Blueprint("api_gateway", __name__, url_prefix="/api/v1"))
DEFAULT_MAX_AGE = 10
CREDENTIAL_REQUIRED = "a gateway credential is required: Authorization: Bearer gw_..."


@bp.post("/keys/verify")
def verify_key() -> Response:
    """Tell the gateway whom a key speaks for, in one read that writes nothing and locks nothing.

    A well-formed check is answered before Flask (identity.web.keycheck); this view answers the
    rest (a body or header it refuses) and any app that is called without that WSGI front.
    """
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    try:
        if kind.lower() != "bearer" or not credential.strip():
            raise Unauthenticated(CREDENTIAL_REQUIRED)
        # The credential first, as POST /api/v1/usage: a wrong one is 401 whatever the body. A read
        # of its own (the front answers every well-formed check in one), and no connection held
        # while the body is read.
        with autocommit(database()) as conn:
            gateway.gateway_actor(conn, credential.strip())
        body = json_body("key")
        if "key" not in body:
            raise InvalidValue("key is required: the API key the gateway was given", field="key")
        secret = text(body, "key")
        with autocommit(database()) as conn:
            found = gateway.check_key(conn, credential.strip(), secret)
    except Unauthenticated:
        metrics.observe_key_check("unauthenticated")
        raise
    metrics.observe_key_check(code_of(found))
    response = jsonify(answer(found))
    response.headers["Cache-Control"] = cache_control(current_app.config)
    return response


def answer(found: gateway.KeyCheck) -> dict[str, Any]:
    """Return the check's JSON: `valid`, then the identity or the refusal's `reason`, then any other
    field the domain's answer carries (each of KeyCheck's fields that is set; a spend refusal's
    `details` beside its reason), so that what the domain adds reaches the gateway without a change here."""
    fields = {field.name: getattr(found, field.name) for field in dataclasses.fields(found)}
    identity, reason, details = fields.pop("identity"), fields.pop("reason"), fields.pop("details")
    body: dict[str, Any] = ({"valid": True, **identity} if identity else
                            {"valid": False, "reason": str(reason), **details})
    body.update({name: value for name, value in fields.items() if value is not None and name not in body})
    return body


def code_of(found: gateway.KeyCheck) -> str:
    """Return the answer's code for the counters: `valid`, or the refusal's reason."""
    return "valid" if found.identity else str(found.reason)


@contextmanager
def autocommit(db: Database) -> Iterator[Connection]:
    """A connection on which the one SELECT is its own snapshot read, with no BEGIN or COMMIT.

    On PostgreSQL that is the point engine's (`Database.point_engine`: autocommit, and plans
    PostgreSQL may reuse). SQLite's connections already run outside a transaction until the
    service sends BEGIN itself (identity.db); asking SQLAlchemy for AUTOCOMMIT there would, on
    return, switch the driver's own implicit transactions back on.
    """
    with db.point_engine.connect() as conn:
        yield conn


def max_age(config: Mapping[str, Any]) -> int:
    """Return how long a gateway may cache a check's answer (`KEY_CHECK_MAX_AGE_SECONDS`)."""
    return max(0, int(config.get("KEY_CHECK_MAX_AGE_SECONDS", DEFAULT_MAX_AGE)))


def cache_control(config: Mapping[str, Any]) -> str:
    """Return the check's Cache-Control header."""
    return f"private, max-age={max_age(config)}"


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    operation = op("The gateway's key check (gateway credential `gw_...`, not an API key): whom a key speaks for, "
                   "or why it is refused (`reason`: unknown, revoked, blocked, expired). Always 200 for a "
                   "well-formed request; `Cache-Control: max-age` says how long the answer may be cached",
                   json_response(ref("KeyCheck")), body="KeyCheckRequest")
    operation["security"] = [{"gateway": []}]
    return {"/api/v1/keys/verify": {"post": operation}}
