"""The floor for benchmarks/bench_scim.py: the `userName eq` lookup with the database layer taken away.

    gunicorn --pythonpath benchmarks floor_app:app

This is the service's own app (`create_app`: request ids, JSON request logs, error handlers, the
same gunicorn settings) with one extra route, `GET /floor/Users?filter=userName eq "..."`, that
does what the SCIM lookup does with as little as Python allows and nothing else:

- the bearer token's row found by its prefix and its hash compared in constant time, as
  `identity.keys.verify_scim_token` does;
- the live user found by `lower(user_name)` in the org, and the user's groups;
- both in one read transaction, as hand-written SQL on the pooled DBAPI connection: no
  SQLAlchemy statement, Session or result machinery, no filter parser (a regular expression takes
  the one value), no rate limit;
- rendered by the service's own `scim.resources.user_to_wire` into the same ListResponse.

It is not a way to serve SCIM (it reads nothing but `userName eq`). It answers one question with
a measurement: how close to the trivial route can a lookup that must check a token and read two
tables in a database come in this stack at all. Whatever the SCIM route reaches is between this
and the ceiling.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from typing import Any

from flask import Response, current_app, request

from identity import create_app, tokens
from identity.app import database
from scim import discovery, resources

app = create_app()
_FILTER = re.compile(r'^\s*userName\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)
_TOKEN = "SELECT org_id, secret_hash, revoked_at FROM scim_tokens WHERE prefix = ?"
_USERS = ("SELECT id, user_name, email, external_id, display_name, given_name, family_name, active, attributes,"
          " created_at, updated_at, version FROM users"
          " WHERE org_id = ? AND deleted_at IS NULL AND lower(user_name) = lower(?) LIMIT 100")
_GROUPS = ("SELECT g.id, g.display_name FROM idp_group_members m JOIN idp_groups g ON g.id = m.group_id"
           " WHERE m.user_id = ? ORDER BY g.display_name")


class _Row:
    """A users row with the attribute names `user_to_wire` reads."""

    def __init__(self, values: tuple[Any, ...]) -> None:
        (self.id, self.user_name, self.email, self.external_id, self.display_name, self.given_name,
         self.family_name, active, attributes, created, updated, self.version) = values
        self.active = bool(active)
        self.attributes = attributes if isinstance(attributes, dict) else json.loads(attributes or "{}")
        self.created_at, self.updated_at = _when(created), _when(updated)


def _when(value: Any) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _error(status: int, detail: str) -> Response:
    return Response(json.dumps({"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": str(status),
                                "detail": detail}), status=status, content_type="application/scim+json")


@app.get("/floor/Users")
def floor_users() -> Response:
    secret = request.headers.get("Authorization", "").partition(" ")[2].strip()
    prefix = tokens.split_prefix(secret)
    found = _FILTER.match(request.args.get("filter", ""))
    if prefix is None or found is None:
        return _error(400 if found is None else 401, "userName eq only, with a SCIM token")
    db = database()
    mark = "?" if db.dialect == "sqlite" else "%s"
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.dialect == "sqlite":
            cursor.execute("BEGIN")
        cursor.execute(_TOKEN.replace("?", mark), (prefix,))
        token = cursor.fetchone()
        if token is None or token[2] is not None or not hmac.compare_digest(
                hashlib.sha256(secret.encode()).hexdigest(), token[1]):
            raw.rollback()
            return _error(401, "invalid or revoked SCIM token")
        cursor.execute(_USERS.replace("?", mark), (token[0], found.group(1)))
        rows = [_Row(values) for values in cursor.fetchall()]
        groups = []
        if rows:
            cursor.execute(_GROUPS.replace("?", mark), (rows[0].id,))
            groups = [(gid, name) for gid, name in cursor.fetchall()]
        if db.dialect == "sqlite":
            cursor.execute("COMMIT")
        else:
            raw.commit()
    finally:
        raw.close()
    base = f"{current_app.config['BASE_URL']}/scim/v2"
    page = [resources.user_to_wire(row, base, groups) for row in rows]
    return Response(json.dumps(discovery.list_response(page, len(page), 1)), content_type="application/scim+json")
