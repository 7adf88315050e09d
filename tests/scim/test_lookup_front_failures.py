"""The IdPs' user lookup answered in front of Flask (scim.lookup_front) when things go wrong: the
database down or hung, and an org over its rate limit. Over real HTTP where time or the
connection matters.

From a hostile review of the hot paths answered before Flask: the docstrings say what the service did.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask
from werkzeug.test import Client

from audit import Actor
from identity.db import Database
from identity.web import metrics
from identity.web.app import create_app
from scim import user_views
from scim.errors import ERROR_SCHEMA
from scim.web import RATE_LIMIT
from tests.fronts import first_front
from tests.live import serving
from tests.scim.client import Scim, scim_for
from tests.statements import statements

LOOKUP = "/scim/v2/Users?filter=" + quote('userName eq "bjensen@example.com"')
LIST = "/scim/v2/Users"
TOKEN = "scim_0123456789ab_" + "x" * 43  # of the form a SCIM token has: the front takes it


@contextmanager
def _database_at(port: int) -> Iterator[str]:
    """An app whose PostgreSQL is at 127.0.0.1:`port`, served over real HTTP."""
    app = create_app({"DATABASE_URL": f"postgresql://identity:pw@127.0.0.1:{port}/identity",
                      "SECRET_KEY": "s", "BASE_URL": "http://localhost"})
    with serving(app, "lookup-front-database-down") as origin:
        yield origin


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, dict[str, str], bytes, float]:
    started = time.monotonic()
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    answer = conn.getresponse()
    data = answer.read()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, data, time.monotonic() - started


def _connection(origin: str) -> http.client.HTTPConnection:
    parts = urlsplit(origin)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)


def test_a_lookup_while_the_database_is_down_is_a_scim_error() -> None:
    """RFC 7644 section 3.12 and DESIGN.md 4 ("errors as SCIM error JSON"): the front met the
    failure, handed the lookup to Flask, and Flask's app-wide handler answered
    `{"error": "internal_error", "message": ..., "request_id": ...}`, labelled
    `application/scim+json` but with no `schemas` and no `status`: an IdP reading the SCIM error
    finds nothing to show its admin."""
    with socket.socket() as closed:  # a port bound and never listened on: every connection refused
        closed.bind(("127.0.0.1", 0))
        with _database_at(closed.getsockname()[1]) as origin:
            conn = _connection(origin)
            try:
                status, headers, data, _ = _get(conn, LOOKUP)
                first = conn.sock
                again, _, _, _ = _get(conn, LOOKUP)  # the connection is still usable
                assert conn.sock is first and again == status
            finally:
                conn.close()
    assert status in (500, 503)
    assert headers["content-type"] == "application/scim+json"
    body = json.loads(data)
    assert body.get("schemas") == [ERROR_SCHEMA] and body.get("status") == str(status), body
    assert headers["x-request-id"] in json.dumps(body)  # the bare 500's request id (STYLE.md), kept


def test_a_lookup_while_the_database_hangs_waits_one_connect_timeout_not_two() -> None:
    """A database that accepts connections and never answers: the front waited its connection
    attempt out (CONNECT_TIMEOUT_SECONDS, 5 s), swallowed the failure and handed the lookup to
    Flask, which waited 5 s more on a connection of its own: 10 s against 5 s for the same request
    without the front (a list), two connection attempts per lookup while the database is away,
    and a worker's one thread held twice as long."""
    with socket.socket() as silent:  # the kernel completes connections; nothing ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        with _database_at(silent.getsockname()[1]) as origin:
            conn = _connection(origin)
            try:
                list_status, _, _, list_took = _get(conn, LIST)  # Flask's view, no front
                lookup_status, _, _, lookup_took = _get(conn, LOOKUP)
            finally:
                conn.close()
    assert list_status >= 500 and lookup_status >= 500
    assert lookup_took < list_took + 2.5, f"the lookup took {lookup_took:.1f} s, a list {list_took:.1f} s"


@pytest.fixture
def scim(db: Database, app: Flask, system: Actor) -> Scim:
    made = scim_for(db, app.test_client(), system, "Acme")
    made.create_user("BJensen@Example.com", externalId="ext-BJ")
    made.get("/Users")  # the token's last-used time saved: the lookups need not write it
    return made


def test_a_lookup_over_the_rate_limit_reads_no_user(db: Database, app: Flask, scim: Scim) -> None:
    """SCIM_RATE_LIMIT bounds what an IdP's flood costs the database. The front runs the lookup
    (the user with its groups) before it asks the rate limit, then hands the refused request to
    Flask, which checks the token again and answers 429: a refused lookup cost the token twice
    and the whole lookup, where the view's refusal costs the token alone."""
    app.config["SCIM_RATE_LIMIT"] = 1
    RATE_LIMIT.window.clear()
    refused: list[Any] | None = None
    try:
        for _ in range(10):
            with statements(db) as sent:
                response = scim.get(LOOKUP.removeprefix("/scim/v2"))
            if response.status_code == 429:
                refused = list(sent)
                break
    finally:
        RATE_LIMIT.window.clear()
    assert refused is not None, "no lookup was refused"
    # The view's refusal: the token read, and the refusal kept in the provisioning status (throttled).
    assert [s for s in refused if not s.endswith(" provisioning_events")] == ["SELECT scim_tokens"], refused


def _scim_errors() -> float:
    return metrics.families().registry.get_sample_value(
        "identity_scim_operations_total", {"resource": "Users", "method": "GET", "outcome": "error"}) or 0


def test_a_failure_in_the_front_is_its_own_500_as_the_views(app: Flask, scim: Scim, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """What the front meets after the token verified (here its page, which the view makes too,
    failing) is answered there, not met again by Flask: the view's 500 but for the request id,
    logged once and counted once."""
    def broken(*_: Any) -> Any:
        raise RuntimeError("the page went wrong")

    monkeypatch.setattr(user_views, "users_page", broken)
    front = first_front(app).fallback  # scim.lookup_front.LookupFirst
    flask, asked = front.fallback, []
    monkeypatch.setattr(front, "fallback", lambda environ, start: asked.append(environ) or flask(environ, start))
    request = {"path": "/scim/v2/Users", "query_string": LOOKUP.split("?", 1)[1], "buffered": True,
               "headers": {"Authorization": f"Bearer {scim.token}"}}
    before = _scim_errors()
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        served = Client(app).open(**request)
        assert not asked, "the front handed its failure to Flask"
        failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert failures == ["unhandled error"]
        flask_only = Client(flask).open(**request)
    finally:
        logger.removeHandler(caplog.handler)
    assert served.status_code == flask_only.status_code == 500
    ids = served.headers["X-Request-Id"], flask_only.headers["X-Request-Id"]
    assert {k: v for k, v in served.headers.items() if k != "X-Request-Id"} == \
        {k: v for k, v in flask_only.headers.items() if k != "X-Request-Id"}
    assert served.json == json.loads(flask_only.get_data(as_text=True).replace(ids[1], ids[0]))
    assert served.json["detail"] == f"internal error; request id {ids[0]}"
    assert _scim_errors() == before + 2


@pytest.mark.parametrize("query", [LOOKUP, LOOKUP + "&count=1"], ids=["answered in front", "a full page, the view's"])
def test_a_lookup_is_counted_once_against_the_rate_limit(app: Flask, scim: Scim, query: str) -> None:
    """The front counts what it answers, and hands what it has counted to Flask with its count:
    three lookups in one second are three counted, whoever answers them."""
    app.config["SCIM_RATE_LIMIT"] = 1
    try:
        for _ in range(5):  # a new second between the requests starts the count again: try again
            RATE_LIMIT.window.clear()
            second = int(time.monotonic())
            statuses = [scim.get(query.removeprefix("/scim/v2")).status_code for _ in range(3)]
            if int(time.monotonic()) == second:
                break
        assert statuses == [200, 429, 429] and RATE_LIMIT.window[scim.org_id] == (second, 3)
    finally:
        RATE_LIMIT.window.clear()
