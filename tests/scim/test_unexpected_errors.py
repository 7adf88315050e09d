"""An unexpected error under /scim/v2 is SCIM's bare 500 (RFC 7644 section 3.12, DESIGN.md 4,
STYLE.md): `schemas`, `status` as a string and a detail naming the request id, the traceback
logged once and never sent, the request counted and kept as the route's 500. The app's own JSON
(`{"error": "internal_error", ...}`) is the admin API's, not an IdP's.

The failure is a view's collaborator replaced by one that raises, as an unexpected error comes from
code that was not expecting to fail; the database really down is tests/scim/test_lookup_front_failures.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from werkzeug.exceptions import InternalServerError
from werkzeug.test import Client

from audit import Actor
from identity import provisioning_log
from identity.db import Database
from identity.web import metrics
from scim import provisioning_status, user_views
from scim.errors import ERROR_SCHEMA
from tests.scim.client import USER, Scim, scim_for

CAUSE = "the users table went away"


def _broken(*_: Any) -> Any:
    raise RuntimeError(CAUSE)


@pytest.fixture
def scim(db: Database, app: Flask, system: Actor) -> Scim:
    return scim_for(db, app.test_client(), system, "Acme")


@contextmanager
def _logged(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        yield caplog.records
    finally:
        logger.removeHandler(caplog.handler)


def _scim_errors(resource: str, method: str) -> float:
    return metrics.families().registry.get_sample_value(
        "identity_scim_operations_total", {"resource": resource, "method": method, "outcome": "error"}) or 0


def test_an_unexpected_error_in_a_view_is_a_scim_500(db: Database, app: Flask, scim: Scim, system: Actor,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(user_views, "users_page", _broken)  # a list's page
    provisioning_status.THROTTLE.last.clear()
    before = _scim_errors("Users", "GET")
    with _logged(caplog) as records:
        response = Client(app).open("/scim/v2/Users", headers={"Authorization": f"Bearer {scim.token}"},
                                    buffered=True)  # read and closed, as a server does: then counted
    request_id = response.headers["X-Request-Id"]
    assert response.status_code == 500 and response.content_type == "application/scim+json"
    assert response.json == {"schemas": [ERROR_SCHEMA], "status": "500",
                             "detail": f"internal error; request id {request_id}"}
    assert CAUSE not in response.get_data(as_text=True)
    failures = [r for r in records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == ["unhandled error"] and failures[0].exc_info is not None
    assert CAUSE in caplog.text  # the traceback, for the operator
    assert _scim_errors("Users", "GET") == before + 1
    with db.reading() as session:
        last = provisioning_log.provisioning_status(session, system, scim.org_id).last_scim
    assert last is not None and (last.status, last.reason, last.request_id) == (500, "internal error", request_id)


def test_a_write_that_fails_unexpectedly_is_a_scim_500(app: Flask, scim: Scim,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from scim import resources

    monkeypatch.setattr(resources, "user_fields", _broken)
    response = scim.post("/Users", {"schemas": [USER], "userName": "bjensen@example.com"})
    assert response.status_code == 500 and response.content_type == "application/scim+json"
    assert response.json["schemas"] == [ERROR_SCHEMA] and response.json["status"] == "500"
    assert response.headers["X-Request-Id"] in response.json["detail"]


def test_an_http_error_a_view_raises_keeps_its_own_answer(app: Flask, scim: Scim) -> None:
    """Flask asks a blueprint's handler of Exception before the app's handler of HTTPException: a
    4xx raised inside a view (here Werkzeug's 413 for a body over MAX_CONTENT_LENGTH, raised when
    the view reads it) stays its own SCIM error, not a 500."""
    app.config["MAX_CONTENT_LENGTH"] = 100
    response = scim.post("/Users", {"schemas": [USER], "userName": "x" * 200})
    assert response.status_code == 413 and response.json["schemas"] == [ERROR_SCHEMA]
    assert response.json["status"] == "413" and response.json["detail"].startswith("the body is over")


def test_an_internal_server_error_is_the_same_bare_500(scim: Scim, monkeypatch: pytest.MonkeyPatch) -> None:
    """Werkzeug's own 500 (what Flask answers for a failure past every handler) under /scim/v2 is
    the same bare 500 naming the request id, not its HTML-ish description."""
    def server_error(*_: Any) -> Any:
        raise InternalServerError()

    monkeypatch.setattr(user_views, "users_page", server_error)
    response = scim.get("/Users")
    assert response.status_code == 500 and response.json == {
        "schemas": [ERROR_SCHEMA], "status": "500",
        "detail": f"internal error; request id {response.headers['X-Request-Id']}"}
