"""The IdPs' user lookup answered in front of Flask (scim.lookup_front) answers exactly as the view does (issue 19).

Each request is sent twice: through the app as served (the front answers a lookup it fully
understands) and straight to Flask's WSGI app behind the fronts (the view answers). Bodies,
statuses and headers must be the same but for the request id; whatever the front does not fully
understand, or would have to write for, reaches Flask, which answers it as it always has.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from sqlalchemy import update
from werkzeug.test import Client

from audit import Actor
from identity import provisioning_log
from identity.credential_models import ScimToken
from identity.db import Database
from identity.web import metrics
from identity.web.keycheck import KeyCheckFirst
from scim import provisioning_status
from scim.lookup_front import LookupFirst
from scim.web import RATE_LIMIT
from tests.fronts import first_front
from tests.scim.client import Scim, scim_for

VARYING = {"X-Request-Id"}


@pytest.fixture
def scim(db: Database, app: Flask, system: Actor) -> Scim:
    made = scim_for(db, app.test_client(), system, "Acme")
    babs = made.create_user("BJensen@Example.com", externalId="ext-BJ", name={"givenName": "Babs"})
    made.create_user("jsmith@example.com")
    for name in ("Tour Guides", "Staff", "staff ops", "Émile's", "_under", "alpha", "Zeta"):  # orders differ by collation
        made.create_group(name, [babs["id"]])
    made.get("/Users")  # the token's last-used time saved: the next lookups need not write it
    return made


def _flask_only(app: Flask) -> Any:
    keycheck = first_front(app)
    assert isinstance(keycheck, KeyCheckFirst) and isinstance(keycheck.fallback, LookupFirst)
    return keycheck.fallback.fallback


def _both(app: Flask, scim: Scim, query: str, **headers: str) -> tuple[Any, Any]:
    # buffered: each answer read whole and closed, as a WSGI server closes it once sent (PEP 3333);
    # a request is counted and logged at that close (identity.web.front.finished).
    request = {"path": "/scim/v2/Users", "query_string": query, "buffered": True,
               "headers": {"Authorization": f"Bearer {scim.token}", **headers}}
    return Client(app).open(**request), Client(_flask_only(app)).open(**request)


def _same(served: Any, flask_only: Any) -> None:
    assert served.status == flask_only.status
    mine = {k: v for k, v in served.headers.items() if k not in VARYING}
    theirs = {k: v for k, v in flask_only.headers.items() if k not in VARYING}
    assert mine == theirs
    assert served.data == flask_only.data or json.loads(served.data).keys() >= {"detail"}


def _filter(text: str, **more: str) -> str:
    return "&".join([f"filter={quote(text)}", *(f"{k}={quote(v)}" for k, v in more.items())])


LOOKUPS = [
    _filter('userName eq "bjensen@example.com"'),
    _filter('USERNAME Eq "BJensen@Example.com"'),
    _filter('externalId eq "ext-BJ"'),
    _filter('emails[type eq "work"].value eq "bjensen@example.com"'),
    _filter('userName eq "nobody@example.com"'),
    _filter('userName eq "bjensen@example.com"', startIndex="1", count="100"),  # as Okta sends it
    _filter('userName eq "bjensen@example.com"', attributes="userName,name.givenName,groups"),
    _filter('userName eq "bjensen@example.com"', excludedAttributes="groups"),
    _filter('userName eq "jsmith@example.com"', startIndex="1", count="0"),
]


@pytest.mark.parametrize("query", LOOKUPS)
def test_the_front_answers_a_lookup_as_the_view_does(app: Flask, scim: Scim, query: str) -> None:
    before = metrics.families().registry.get_sample_value(
        "identity_scim_operations_total", {"resource": "Users", "method": "GET", "outcome": "success"}) or 0
    served, flask_only = _both(app, scim, query, **{"X-Request-Id": "okta-17"})
    _same(served, flask_only)
    assert served.status_code == 200 and served.headers["X-Client-Request-Id"] == "okta-17"
    assert served.content_type == "application/scim+json"
    after = metrics.families().registry.get_sample_value(
        "identity_scim_operations_total", {"resource": "Users", "method": "GET", "outcome": "success"})
    assert after == before + 2  # the front's answer counted as the view's is


def test_the_lookup_is_the_fronts_own(app: Flask, scim: Scim, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parity above proves nothing if the front never answers: here Flask is not reached."""
    front = _flask_only(app)

    def unreachable(*_: Any) -> Any:
        raise AssertionError("Flask was asked")

    monkeypatch.setattr(first_front(app).fallback, "fallback", unreachable)
    response = Client(app).open("/scim/v2/Users", query_string=_filter('userName eq "bjensen@example.com"'),
                                headers={"Authorization": f"Bearer {scim.token}"})
    assert response.status_code == 200 and response.json["totalResults"] == 1
    resource = response.json["Resources"][0]
    assert resource["userName"] == "BJensen@Example.com"
    assert {g["display"] for g in resource["groups"]} == {"Tour Guides", "Staff", "staff ops", "Émile's", "_under",
                                                           "alpha", "Zeta"}
    assert front is not None


@pytest.mark.parametrize("query", [
    "",  # a list, not a lookup
    _filter('userName co "jensen"'),
    _filter('userName eq "bjensen@example.com"', sortBy="userName"),
    _filter('userName eq "bjensen@example.com"', count="1"),  # a full page: the view counts
    _filter('userName eq "bjensen@example.com"', count="x"),
    _filter('userName eq "bjensen@example.com"', sortOrder="sideways"),
    _filter('userName eq "bjensen@example.com"') + "&filter=x",
    _filter('userName eq "bjensen@example.com"') + "&Filter=x",
    _filter('userName eq "a\x00b"'),
    "filter=userName%20eq%20%22%ff%22",  # not UTF-8
    _filter('userName eq "bjensen@example.com"', other="1"),
    _filter('userName eq "bjensen@example.com" and active eq true'),
], ids=["list", "co", "sortBy", "full page", "bad count", "bad sortOrder", "repeated", "repeated in another case",
        "NUL", "not UTF-8", "unknown parameter", "not a lookup form"])
def test_what_the_front_does_not_answer_reaches_flask(app: Flask, scim: Scim, query: str) -> None:
    served, flask_only = _both(app, scim, query)
    _same(served, flask_only)


@pytest.mark.parametrize("authorization", ["", "Basic abc", "Bearer scim_nope_nope", "Bearer scim_", "Bearer  "])
def test_a_refused_credential_is_the_views_refusal(app: Flask, scim: Scim, authorization: str) -> None:
    request = {"path": "/scim/v2/Users", "query_string": _filter('userName eq "bjensen@example.com"'),
               "headers": {"Authorization": authorization}}
    served, flask_only = Client(app).open(**request), Client(_flask_only(app)).open(**request)
    _same(served, flask_only)
    assert served.status_code == 401 and "BJensen" not in served.text


def test_a_revoked_token_and_another_orgs_users_are_not_answered(db: Database, app: Flask, scim: Scim,
                                                                system: Actor) -> None:
    other = scim_for(db, app.test_client(), system, "Globex")
    other.get("/Users")
    theirs = Client(app).open("/scim/v2/Users", query_string=_filter('userName eq "bjensen@example.com"'),
                              headers={"Authorization": f"Bearer {other.token}"})
    assert theirs.status_code == 200 and theirs.json["totalResults"] == 0
    with db.transaction() as session:
        session.execute(update(ScimToken).where(ScimToken.org_id == scim.org_id)
                        .values(revoked_at=dt.datetime.now(dt.UTC)))
    served, flask_only = _both(app, scim, _filter('userName eq "bjensen@example.com"'))
    _same(served, flask_only)
    assert served.status_code == 401


def test_a_get_with_a_body_is_flasks(app: Flask, scim: Scim, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body on a GET is Flask's to read and drop (identity.web.unread_body), so that the keep-alive
    connection it came on stays whole: the front never answers one."""
    asked: list[str] = []
    flask_only = _flask_only(app)

    def flask(environ: dict[str, Any], start_response: Any) -> Any:
        asked.append(environ["PATH_INFO"])
        return flask_only(environ, start_response)

    monkeypatch.setattr(first_front(app).fallback, "fallback", flask)
    response = Client(app).open("/scim/v2/Users", query_string=_filter('userName eq "bjensen@example.com"'),
                                data=b'{"x": 1}', headers={"Authorization": f"Bearer {scim.token}"})
    assert response.status_code == 200 and asked == ["/scim/v2/Users"]


def test_a_due_last_used_time_is_saved_by_the_view(db: Database, app: Flask, scim: Scim) -> None:
    with db.transaction() as session:
        session.execute(update(ScimToken).where(ScimToken.org_id == scim.org_id).values(last_used_at=None))
    response = scim.get("/Users?" + _filter('userName eq "bjensen@example.com"'))
    assert response.status_code == 200 and response.json["totalResults"] == 1
    with db.reading() as session:
        assert session.query(ScimToken.last_used_at).filter_by(org_id=scim.org_id).scalar() is not None


def test_the_rate_limit_holds_for_the_fronts_lookups(app: Flask, scim: Scim) -> None:
    """The limit counts per org and second (scim.web._RateLimit): the six lookups are sent again until
    they fall in one second, which a loaded machine may not give the first time."""
    app.config["SCIM_RATE_LIMIT"] = 3
    for _ in range(10):
        RATE_LIMIT.window.clear()
        second = int(time.monotonic())
        statuses = [scim.get("/Users?" + _filter('userName eq "bjensen@example.com"')).status_code for _ in range(6)]
        if int(time.monotonic()) == second:
            break
    RATE_LIMIT.window.clear()
    assert statuses == [200, 200, 200, 429, 429, 429]


def test_the_fronts_lookup_is_kept_in_the_provisioning_status(db: Database, app: Flask, scim: Scim,
                                                                system: Actor) -> None:
    provisioning_status.THROTTLE.last.clear()  # forget what earlier requests were let through
    response = scim.get("/Users?" + _filter('userName eq "bjensen@example.com"'))
    with db.reading() as session:
        last = provisioning_log.provisioning_status(session, system, scim.org_id).last_scim
    assert last is not None and (last.method, last.route, last.status) == ("GET", "/scim/v2/Users", 200)
    assert last.request_id == response.headers["X-Request-Id"] and last.credential and "SCIM token" in last.credential


def test_the_front_logs_the_route_never_the_token_or_filter(app: Flask, scim: Scim,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        response = scim.get("/Users?" + _filter('userName eq "bjensen@example.com"'))
    finally:
        logger.removeHandler(caplog.handler)
    lines = [r for r in caplog.records if r.getMessage() == "request"]
    assert len(lines) == 1 and lines[0].route == "/scim/v2/Users" and lines[0].status == 200  # type: ignore[attr-defined]
    assert lines[0].request_id == response.headers["X-Request-Id"]  # type: ignore[attr-defined]
    assert scim.token not in caplog.text and "bjensen" not in caplog.text.lower()
