"""The key check's own WSGI path (identity.web.keycheck) answers exactly as the Flask view does (issue 16).

Each request is sent twice: through the app as served (the front answers a well-formed check) and
straight to Flask's WSGI app behind it (the view answers). Bodies, statuses and headers must be
the same but for the request id; whatever the front does not fully understand reaches Flask.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from werkzeug.test import Client

from audit import Actor
from identity import keys
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.cli import main
from identity.web.keycheck import KeyCheckFirst
from identity.web.logs import JsonFormatter
from tests.fronts import first_front

VARYING = {"X-Request-Id", "Content-Length"}  # a fresh id per request (and so a problem body's length)


@pytest.fixture
def credential(db: Database, runner: CliRunner) -> str:
    result = runner.invoke(main, ["gateway", "credential", "create", "--json"])
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout.splitlines()[0])["credential"])


@pytest.fixture
def secret(db: Database, system: Actor, acme: NewOrg) -> str:
    with db.transaction() as session:
        return keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                   name="k", scopes=["inference"]).secret


def _both(app: Flask, **request: Any) -> tuple[Any, Any]:
    front = first_front(app)
    assert isinstance(front, KeyCheckFirst)
    served = Client(app).open(**request)
    flask_only = Client(front.fallback).open(**request)
    return served, flask_only


def _same(served: Any, flask_only: Any) -> None:
    assert served.status == flask_only.status
    mine = {k: v for k, v in served.headers.items() if k not in VARYING}
    theirs = {k: v for k, v in flask_only.headers.items() if k not in VARYING}
    assert mine == theirs
    body, other = json.loads(served.data), json.loads(flask_only.data)
    assert body.pop("request_id", None) == served.headers["X-Request-Id"] or "request_id" not in other
    other.pop("request_id", None)
    assert body == other


@pytest.mark.parametrize("case", ["valid", "unknown", "empty", "no key member", "wrong credential", "no credential"])
def test_the_front_answers_as_the_view_does(app: Flask, credential: str, secret: str, case: str) -> None:
    auth = {"no credential": {}, "wrong credential": {"Authorization": "Bearer gw_000000000000_x"}}.get(
        case, {"Authorization": f"Bearer {credential}"})
    body = {"valid": {"key": secret}, "unknown": {"key": "key_nope_nope"}, "empty": {"key": ""}}.get(case, {})
    served, flask_only = _both(app, path="/api/v1/keys/verify", method="POST", json=body,
                               headers={**auth, "X-Request-Id": "gw-17"})
    _same(served, flask_only)
    assert served.headers["X-Client-Request-Id"] == "gw-17"
    if case == "valid":
        assert served.json["valid"] is True and served.headers["Cache-Control"] == "private, max-age=10"
    elif "credential" in case:
        assert served.status_code == 401 and served.content_type == "application/problem+json"
        challenge = 'Bearer realm="identity"' + (', error="invalid_token"' if case == "wrong credential" else "")
        assert served.headers["WWW-Authenticate"] == challenge  # RFC 6750 section 3.1


@pytest.mark.parametrize("request_args", [
    {"data": b"{not json", "content_type": "application/json"},
    {"json": {"key": "x", "other": 1}},
    {"json": {"key": 5}},
    {"json": ["key"]},
    {"json": {"key": "a\x00b"}},
    {"data": b'{"key": "x"}', "content_type": "text/plain"},
    {"json": {"key": "x"}, "query_string": "a=b"},  # the view's: a parameter the document does not declare
], ids=["not json", "unknown member", "not a string", "not an object", "NUL", "not JSON's type", "query"])
def test_what_the_front_does_not_answer_reaches_flask(app: Flask, credential: str, request_args: dict) -> None:
    served, flask_only = _both(app, path="/api/v1/keys/verify", method="POST",
                               headers={"Authorization": f"Bearer {credential}"}, **request_args)
    _same(served, flask_only)
    assert served.status_code == 400 and served.json["code"] == "invalid_value"
    if "query_string" in request_args:
        assert served.json["field"] == "a"


def test_other_methods_and_an_oversized_body_are_flasks(app: Flask, credential: str) -> None:
    client = app.test_client()
    assert client.get("/api/v1/keys/verify").status_code == 405
    big = {"key": "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)}
    response = client.post("/api/v1/keys/verify", json=big, headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 413 and response.content_type == "application/problem+json"


def test_the_front_logs_the_route_never_the_key(app: Flask, credential: str, secret: str,
                                                caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        response = app.test_client().post("/api/v1/keys/verify", json={"key": secret},
                                          headers={"Authorization": f"Bearer {credential}"}, buffered=True)  # sent, closed
    finally:
        logger.removeHandler(caplog.handler)
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(lines) == 1 and lines[0].route == "/api/v1/keys/verify" and lines[0].status == 200  # type: ignore[attr-defined]
    assert lines[0].request_id == response.headers["X-Request-Id"]  # type: ignore[attr-defined]
    assert secret not in caplog.text and credential not in caplog.text


def test_an_unexpected_error_is_a_bare_500_with_the_request_id(app: Flask, credential: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from identity import gateway

    def broken(*args: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(gateway, "check_key", broken)
    response = app.test_client().post("/api/v1/keys/verify", json={"key": "x"},
                                      headers={"Authorization": f"Bearer {credential}"}, buffered=True)  # sent, closed
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "message": "internal error",
                             "request_id": response.headers["X-Request-Id"]}


def test_a_line_logged_after_a_key_check_answered_in_front_carries_no_request_id(app: Flask, credential: str,
                                                                                 secret: str) -> None:
    """The front sets the log's request id as Flask does; the request over, the thread's next line
    (gunicorn's, about another connection) must not carry it."""
    served = Client(app).open(path="/api/v1/keys/verify", method="POST", json={"key": secret},
                              headers={"Authorization": f"Bearer {credential}"}, buffered=True)  # sent, closed
    assert served.status_code == 200 and isinstance(first_front(app), KeyCheckFirst)
    record = logging.makeLogRecord({"name": "gunicorn.error", "levelname": "WARNING", "msg": "Invalid request"})
    assert json.loads(JsonFormatter().format(record))["request_id"] is None
