"""`/metrics` on the service's own port, for a bearer of the operator's `METRICS_TOKEN` (issue 19).

Without `METRICS_TOKEN` the route does not exist here (404): the counters are then served only by
the separate listener on 127.0.0.1 that `METRICS_PORT` opens (identity.web.metrics_serve), or not
at all. The token is compared in constant time; a wrong or missing one is 401.
"""

from __future__ import annotations

import hmac

from flask import Flask, Response, current_app, request

from identity.web import metrics


def init_app(app: Flask) -> None:
    """Create the counters in this process and add `/metrics` when the operator set a token."""
    metrics.families()  # before the first request: its audit events are counted too
    if app.config.get("METRICS_TOKEN"):
        app.add_url_rule("/metrics", "metrics", serve_metrics)


def serve_metrics() -> Response:
    """Answer the counters of every worker in Prometheus text format, to the token's bearer only."""
    expected = str(current_app.config["METRICS_TOKEN"]).encode()
    kind, _, presented = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected):
        return Response("a metrics token is required: Authorization: Bearer <METRICS_TOKEN>\n", 401,
                        {"WWW-Authenticate": 'Bearer realm="metrics"', "Content-Type": "text/plain"})
    body, content_type = metrics.exposition()
    return Response(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})
