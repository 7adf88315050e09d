"""`/metrics` (issue 19, "Operators' view"): each family counts, nothing secret reaches a label, and
the counters are for the operator only (a token on the service's port, or a listener on 127.0.0.1)."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from typing import Any

import prometheus_client  # noqa: F401  (see test_the_listener_serves_on_loopback)
import pytest
from click.testing import CliRunner
from flask import Flask

from audit import Actor, record
from audit.log import Target
from identity import orgs, scim_credentials, service, users
from identity.db import Database
from identity.errors import SeatCapReached
from identity.orgs import NewOrg
from identity.web import metrics, metrics_serve
from identity.web.app import create_app
from identity.web.cli import main
from tests.factories import provision

TOKEN = "metrics-token-for-tests"


def value(name: str, **labels: str) -> float:
    """Return a sample of this process's counters (0 when it has not been counted yet)."""
    found = metrics.families().registry.get_sample_value(name, labels)
    return float(found or 0)


@pytest.fixture
def guarded(db: Database) -> Flask:
    return create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min", "TESTING": True,
                       "BASE_URL": "http://localhost", "METRICS_TOKEN": TOKEN})


def test_requests_are_counted_by_route_and_status(client: Any) -> None:
    before = value("identity_http_requests_total", method="GET", route="/healthz", status="200")
    seconds = value("identity_http_request_duration_seconds_count", method="GET", route="/healthz")
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert value("identity_http_requests_total", method="GET", route="/healthz", status="200") == before + 3
    assert value("identity_http_request_duration_seconds_count", method="GET", route="/healthz") == seconds + 3
    unmatched = value("identity_http_requests_total", method="other", route="-", status="404")
    assert client.open("/healthz-nope", method="BREW").status_code == 404  # any method name: a bounded label
    assert value("identity_http_requests_total", method="other", route="-", status="404") == unmatched + 1


def test_scim_operations_by_resource_method_and_outcome(client: Any, db: Database, system: Actor,
                                                        acme: NewOrg) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    labels = {"resource": "Users", "method": "POST"}
    made, refused = value("identity_scim_operations_total", outcome="success", **labels), \
        value("identity_scim_operations_total", outcome="refused", **labels)
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "sam@acme.test"}
    assert client.post("/scim/v2/Users", data=json.dumps(body), headers=headers).status_code == 201
    assert client.post("/scim/v2/Users", data=json.dumps(body), headers=headers).status_code == 409
    assert value("identity_scim_operations_total", outcome="success", **labels) == made + 1
    assert value("identity_scim_operations_total", outcome="refused", **labels) == refused + 1


def test_key_check_answers_by_code(client: Any, acme: NewOrg, runner: CliRunner) -> None:
    credential = json.loads(runner.invoke(main, ["gateway", "credential", "create", "--json"]).stdout.splitlines()[0])
    gateway = {"Authorization": f"Bearer {credential['credential']}"}
    before = {code: value("identity_key_checks_total", answer=code) for code in ("unknown", "unauthenticated")}
    client.post("/api/v1/keys/verify", json={"key": "key_nope_nope"}, headers=gateway)
    client.post("/api/v1/keys/verify", json={"key": "key_nope_nope"}, headers={"Authorization": "Bearer gw_x_y"})
    assert value("identity_key_checks_total", answer="unknown") == before["unknown"] + 1
    assert value("identity_key_checks_total", answer="unauthenticated") == before["unauthenticated"] + 1


def test_seats_bought_and_refused_and_audit_events_from_what_was_committed(db: Database, system: Actor,
                                                                           acme: NewOrg) -> None:
    bought, written = value("identity_seat_purchases_total", kind="purchased"), \
        value("identity_audit_events_total", action="user.created", outcome="success")
    for n in range(3):  # the owner and 2 more fill the 3 included seats; the third buys one
        provision(db, system, acme.org.id, f"m{n}@acme.test")
    assert value("identity_seat_purchases_total", kind="purchased") == bought + 1
    assert value("identity_audit_events_total", action="user.created", outcome="success") == written + 3
    with db.transaction() as session:
        capped = orgs.create_org(session, system, "Capped", owner_email="o@capped.test", max_seats=1)
    refusals = value("identity_seat_refusals_total")
    with pytest.raises(SeatCapReached):
        service.run(db, system, users.provision_user, capped.org.id, user_name="x@capped.test", source="manual")
    assert value("identity_seat_refusals_total") == refusals + 1


def test_saml_sign_ins_by_outcome_and_reason(db: Database, system: Actor, acme: NewOrg) -> None:
    ok, bad = value("identity_saml_sign_ins_total", outcome="success", reason=""), \
        value("identity_saml_sign_ins_total", outcome="refused", reason="invalid_signature")
    target = Target("org", acme.org.id, acme.org.slug)
    with db.transaction() as session:
        record(session, system, "sso.login_succeeded", target, {"flow": "sp_initiated"}, org_id=acme.org.id)
        record(session, system, "sso.login_succeeded", target, {"flow": "login_link"}, org_id=acme.org.id)
        record(session, system, "sso.login_failed", target, {"reason": "invalid_signature",
                                                             "left_out_since_last": 4}, org_id=acme.org.id)
    with pytest.raises(RuntimeError), db.transaction() as session:  # rolled back: never counted
        record(session, system, "sso.login_failed", target, {"reason": "invalid_signature"}, org_id=acme.org.id)
        raise RuntimeError("rolled back")
    assert value("identity_saml_sign_ins_total", outcome="success", reason="") == ok + 1  # not the login link
    assert value("identity_saml_sign_ins_total", outcome="refused", reason="invalid_signature") == bad + 5


def test_metrics_need_the_token(guarded: Flask, client: Any) -> None:
    assert client.get("/metrics").status_code == 404  # no METRICS_TOKEN: not served on the service's port
    served = guarded.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = served.get("/metrics", headers=headers)
        assert response.status_code == 401 and b"identity_" not in response.data
    response = served.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200 and response.content_type.startswith("text/plain")
    assert b"# TYPE identity_http_requests_total counter" in response.data


def test_no_secret_and_no_raw_path_in_a_label(guarded: Flask, runner: CliRunner, acme: NewOrg) -> None:
    client = guarded.test_client()
    credential = json.loads(runner.invoke(main, ["gateway", "credential", "create", "--json"]).stdout.splitlines()[0])
    secret_path = "/login/link/s3cret-link-token-0123456789"
    client.get(secret_path)
    client.get("/no/such/place-sup3rsecret")
    client.post("/api/v1/keys/verify", json={"key": "key_abc_s3cretkey"},
                headers={"Authorization": f"Bearer {credential['credential']}"})
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).data.decode()
    for secret in ("s3cret-link-token", "sup3rsecret", "s3cretkey", credential["credential"], TOKEN):
        assert secret not in text
    routes = {line.split('route="', 1)[1].split('"', 1)[0] for line in text.splitlines() if 'route="' in line}
    assert all(route == "-" or route.startswith("/") and "s3cret" not in route for route in routes)


def test_the_listener_serves_on_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # prometheus_client picks its counters' storage once, when first imported: imported first here,
    # with the variable set, it would leave this test process's later apps in multiprocess mode with
    # no folder (every create_app after it failed, seen when xdist ran this test first on a worker).
    # The module's import of it comes first.
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    server = metrics_serve.start_listener(port)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
