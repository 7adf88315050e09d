"""The floor for benchmarks/bench_scim.py: the `userName eq` lookup with the database layer taken away.

    gunicorn --pythonpath benchmarks floor_app:app

This is the service's own app (`create_app`: request ids, JSON request logs, error handlers, the
same gunicorn settings) with one extra route, `GET /floor/Users?filter=userName eq "..."`, that
does what the SCIM lookup does with as little as Python allows and nothing else:

- the bearer token's row found by its prefix and its hash compared in constant time, as
  `identity.scim_credentials.verify_scim_token` does;
- the live user found by its userName key (NFC, casefold) in the org, and the user's groups;
- both in one read transaction, as hand-written SQL (benchmarks/raw_sql.py) on a DBAPI
  connection from the service's pool: no SQLAlchemy statement, Session or result machinery, no
  filter parser (a regular expression takes the one value), no rate limit;
- rendered by the service's own `scim.resources.user_to_wire` into the same ListResponse.

It is not a way to serve SCIM (it reads nothing but `userName eq`). It answers one question with
a measurement: how close to the trivial route the lookup's database work comes inside the
service's app. benchmarks/bare_app.py runs the same SQL in a plain Flask app; the difference
between the two is what the app itself costs per request.
"""

from __future__ import annotations

from flask import Response, current_app, request
from raw_sql import Raw, lookup_response

from identity.web.app import create_app
from identity.web.context import database

app = create_app()


@app.get("/floor/Users")
def floor_users() -> Response:
    db = database()
    connection = db.engine.raw_connection()  # from the service's pool, as each request takes one
    try:
        return lookup_response(Raw(connection.driver_connection, db.dialect), request.args.get("filter", ""),
                               request.headers.get("Authorization", ""), f"{current_app.config['BASE_URL']}/scim/v2")
    finally:
        connection.close()
