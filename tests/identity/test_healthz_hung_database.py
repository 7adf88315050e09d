"""`GET /healthz` answers 503 when the database does not answer (README: "200 when the database
answers, 503 otherwise"), also when it does not answer at all: a PostgreSQL host that accepts the
connection and then says nothing (a hung server, a network path that drops its answers).

From a hostile operator's review: the docstring says what the service did.
"""

from __future__ import annotations

import http.client
import socket
import time
from urllib.parse import urlsplit

from identity.web.app import create_app
from tests.live import serving

ANSWER_WITHIN = 15  # seconds: a load balancer's health check gives up long before gunicorn's 60 s worker timeout


def test_a_database_that_never_answers_is_a_503_not_a_hung_health_check() -> None:
    """No connect_timeout (nor any other bound) was set on the PostgreSQL connections: /healthz
    waited for the database forever (under gunicorn, until the worker was killed at its 60 s
    timeout), so the health check never said 503, and neither did anything else: each worker's
    thread hung on its first query."""
    with socket.socket() as silent:  # accepts connections (the kernel completes them) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        app = create_app({"DATABASE_URL": f"postgresql://identity:pw@127.0.0.1:{silent.getsockname()[1]}/identity",
                          "SECRET_KEY": "s", "BASE_URL": "http://localhost"})
        with serving(app, "healthz-hung-database") as origin:
            parts = urlsplit(origin)
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=ANSWER_WITHIN + 5)
            started = time.monotonic()
            try:
                conn.request("GET", "/healthz")
                answer = conn.getresponse()
                status = answer.status
                answer.read()
            except TimeoutError:
                status = None
            finally:
                conn.close()
            waited = time.monotonic() - started
    assert status == 503 and waited < ANSWER_WITHIN, f"/healthz answered {status} after {waited:.1f} s"
