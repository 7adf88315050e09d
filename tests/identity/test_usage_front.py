"""The usage debit's own WSGI path (identity.web.usage_front) answers as the Flask view does, and hands
Flask whatever it does not fully understand, with the body it sent (the key check's front's tests,
tests/identity/test_keycheck_front.py, for the same promises)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from identity.web.keycheck import KeyCheckFirst
from identity.web.usage_front import UsageFirst
from tests.fronts import first_front
from tests.identity.test_keycheck_front import _same, credential  # noqa: F401  (credential: the fixture)
from tests.identity.test_wallet_usage import World, top_up, world  # noqa: F401  (world: the fixture)


def _front(app: Flask) -> UsageFirst:
    """The usage front, found along the chain of fronts the app is served through."""
    found: Any = first_front(app)
    assert isinstance(found, KeyCheckFirst)
    while not isinstance(found, UsageFirst):
        found = found.fallback
    return found


def _record(of: World, request_id: str, changed: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"key_id": of.member_key_id, "model": "gpt-x", "cost_micros": 100, "request_id": request_id,
            **(changed or {})}


def test_the_front_answers_as_the_view_does(app: Flask, world: World) -> None:  # noqa: F811
    top_up(app.test_client(), world, 1_000)
    headers = {**world.gateway, "X-Request-Id": "gw-18"}
    served = Client(app).post("/api/v1/usage", json=_record(world, "f1"), headers=headers)
    flask_only = Client(_front(app).fallback).post("/api/v1/usage", json=_record(world, "f2"), headers=headers)
    assert served.status_code == flask_only.status_code == 200
    assert {k for k in served.headers.keys()} == {k for k in flask_only.headers.keys()}
    assert {k: v for k, v in served.headers.items() if k not in ("X-Request-Id", "Content-Length")} == \
        {k: v for k, v in flask_only.headers.items() if k not in ("X-Request-Id", "Content-Length")}
    assert served.headers["X-Client-Request-Id"] == "gw-18"
    assert served.json == {**flask_only.json, "request_id": "f1", "balance_micros": 900, "remaining_micros": 900}


@pytest.mark.parametrize("request_args", [
    {"data": b"{not json", "content_type": "application/json"},
    {"record": {"other": 1}},
    {"record": {"cost_micros": "100"}},
    {"record": {"cost_micros": 0}},
    {"record": {"model": "a\x00b"}},
    {"record": {"request_id": "a\ud800"}},
    {"record": {}, "content_type": "text/plain"},
    {"record": {}, "query_string": "a=b"},
], ids=["not json", "unknown member", "not an integer", "zero", "NUL", "lone surrogate", "not JSON's type", "query"])
def test_what_the_front_does_not_answer_reaches_flask(app: Flask, world: World,  # noqa: F811
                                                      request_args: dict[str, Any]) -> None:
    args = dict(request_args)
    if "record" in args:
        body = _record(world, "bad", args.pop("record"))
        args["data"] = Flask.json_provider_class(app).dumps(body).encode() if "\ud800" not in str(body) else \
            b'{"key_id": "%s", "model": "m", "cost_micros": 1, "request_id": "a\\ud800"}' % world.member_key_id.encode()
        args.setdefault("content_type", "application/json")
    served = Client(app).post("/api/v1/usage", headers=world.gateway, **args)
    flask_only = Client(_front(app).fallback).post("/api/v1/usage", headers=world.gateway, **args)
    _same(served, flask_only)
    assert served.status_code == 400 and served.json["code"] == "invalid_value"


def test_the_front_logs_the_route_never_the_credential(app: Flask, world: World,  # noqa: F811
                                                      caplog: pytest.LogCaptureFixture) -> None:
    top_up(app.test_client(), world, 1_000)
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        response = app.test_client().post("/api/v1/usage", json=_record(world, "l1"), headers=world.gateway)
    finally:
        logger.removeHandler(caplog.handler)
    # (the top-up's own line may come late: the test client closes its answer when it is collected)
    lines = [r for r in caplog.records if r.getMessage() == "request" and r.route == "/api/v1/usage"]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].route == "/api/v1/usage" and lines[0].status == 200  # type: ignore[attr-defined]
    assert lines[0].request_id == response.headers["X-Request-Id"]  # type: ignore[attr-defined]
    assert world.gateway["Authorization"].split()[1] not in caplog.text


def test_an_unexpected_error_is_a_bare_500_with_the_request_id(app: Flask, world: World,  # noqa: F811
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from identity import usage_quick

    def broken(*args: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(usage_quick, "quick_debit", broken)
    response = app.test_client().post("/api/v1/usage", json=_record(world, "e1"), headers=world.gateway)
    assert response.status_code == 500
    assert response.json == {"error": "internal_error", "message": "internal error",
                             "request_id": response.headers["X-Request-Id"]}
