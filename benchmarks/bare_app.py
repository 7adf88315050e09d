"""The bare floor for benchmarks/bench_scim.py: the lookup and the create with everything taken away
but Flask and the database work, served exactly like the service.

    gunicorn --pythonpath benchmarks bare_app:app

A plain `Flask(__name__)`, like benchmarks/ceiling_app.py: none of the service's request ids,
request logs, error handlers, session cookie or rate limit. Each worker thread keeps one DBAPI
connection for good (no pool checkout), opened through `identity.db.Database` so that it has the
service's connection settings (on SQLite: WAL, `synchronous=NORMAL`, the background checkpointer)
and, on SQLite, with the service's writers' gate taken before each write (raw_sql.Raw).
The database work is benchmarks/raw_sql.py's hand-written SQL:

- `GET /bare/Users?filter=userName eq "..."`: the token's row by prefix and its hash compared in
  constant time, the live user by its userName key (NFC, casefold), the user's groups; one read transaction;
  rendered by `scim.resources.user_to_wire`.
- `POST /bare/Users`: the same token check, then one write transaction with the statements
  `users.provision_user` runs for a new active user (the org's seat count, the user, its work
  email, its two role grants, two hash-chained audit events and the chain's head), rendered the
  same way, 201.
- `DELETE /bare/Users/<id>` (benchmarks/bench_peer.py): the same token check, then the statements
  `users.remove_user` sends for a SCIM DELETE (raw_sql.Raw.delete), 204.
- `POST /bare/usage` (benchmarks/bench_usage.py): one usage record, what `usage.record_usage`
  writes for an accepted debit (raw_sql.debit), as JSON.
- `POST /bare/usage-fused` (PostgreSQL): the same debit in two statements (raw_sql.debit_fused).
- `POST /bare/write` (benchmarks/bench_peer.py): the least any durable write can be, one INSERT of
  one row into a table of its own and a COMMIT, no credential, no audit, 204: a bound on every
  design that keeps its writes in this database, whatever its statements.

It answers one question: what share of the ceiling any implementation of these two routes can
reach on Flask and gunicorn with this database, before it does any of the things a service must
(validate the SCIM body, parse the filter grammar, rate-limit, log). It is no way to serve SCIM.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from raw_sql import Raw, answer, debit, debit_fused, lookup_response, refused

from identity.db import Database
from scim import resources

app = Flask(__name__)
_db = Database(os.environ["DATABASE_URL"])
_db.start_background_work()
_local = threading.local()
_BASE = os.environ.get("BASE_URL", "http://127.0.0.1") + "/scim/v2"
with _db.engine.begin() as _conn:  # POST /bare/write's table (not the service's: it is never read)
    _conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bare_writes (written_at VARCHAR(40) NOT NULL)")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _raw() -> Raw:
    raw: Raw | None = getattr(_local, "raw", None)
    if raw is None:
        pooled = _db.engine.raw_connection()  # kept for good: the pool never takes it back
        raw = _local.raw = Raw(pooled.driver_connection, _db.dialect, _db.gate, pooled.info)
    return raw


@app.get("/")
def ready() -> str:
    return "ok"


@app.get("/bare/Users")
def lookup() -> Response:
    return lookup_response(_raw(), request.args.get("filter", ""), request.headers.get("Authorization", ""), _BASE)


def _as_token(work: Callable[[Raw, tuple[Any, ...], str, str, str], Any]) -> Any:
    """Check the SCIM token in a read transaction of its own, then run `work` (the raw connection,
    the token's row, the request id, address and user agent) in one write transaction: a 401
    Response when the token is refused, else what `work` returns, committed."""
    raw = _raw()
    raw.begin()
    token = raw.token(request.headers.get("Authorization", ""))
    if token is None:
        raw.rollback()
        return refused(401, "invalid or revoked SCIM token")
    raw.commit()
    raw.begin(write=True)
    try:
        done = work(raw, token, request.headers.get("X-Request-Id", ""), request.remote_addr or "",
                    request.user_agent.string)
    except BaseException:
        raw.rollback()
        raise
    raw.commit()
    return done


@app.post("/bare/Users")
def create() -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("userName"), str):
        return refused(400, "a JSON object with a userName")
    row = _as_token(lambda raw, token, *request_of: raw.create(token, body, *request_of))
    return row if isinstance(row, Response) else answer(201, resources.user_to_wire(row, _BASE, []))


@app.post("/bare/usage-fused")
def usage_fused() -> Response:
    """`POST /bare/usage` in two statements (PostgreSQL only)."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not {"key_id", "model", "cost_micros", "request_id"} <= body.keys():
        return refused(400, "a usage record")
    status, result = debit_fused(_raw(), request.headers.get("Authorization", ""), body)
    return answer(status, result)


@app.post("/bare/write")
def one_write() -> Response:
    """One row written and committed, nothing else (see the module's docstring)."""
    raw = _raw()
    raw.begin(write=True)
    raw.cursor.execute(raw.sql("INSERT INTO bare_writes (written_at) VALUES (?)"), (str(_now()),))
    raw.commit()
    return Response(status=204)


@app.delete("/bare/Users/<user_id>")
def delete(user_id: str) -> Response:
    found = _as_token(lambda raw, token, *request_of: raw.delete(token, user_id, *request_of))
    return found if isinstance(found, Response) else Response(status=204) if found else refused(404, "no such user")


@app.post("/bare/usage")
def usage() -> Response:
    """One usage record (`POST /api/v1/usage`'s single form), debited with hand-written SQL."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not {"key_id", "model", "cost_micros", "request_id"} <= body.keys():
        return refused(400, "a usage record")
    status, result = debit(_raw(), request.headers.get("Authorization", ""), body)
    return answer(status, result)
