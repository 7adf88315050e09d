"""Anonymous requests cannot grow the database without bound (issue 14): what an ACS post, a
/login, a /me or a /logout without a session may write, and what they may not."""

from __future__ import annotations

import base64
import datetime as dt
import logging

import pytest
from sqlalchemy import func, select

from audit import clock
from audit.models import AuditEvent
from identity.web.app import create_app
from saml import once
from saml.models import SamlPendingRequest
from saml.refusals import WINDOW
from tests.saml.conftest import BASE_URL, Sso, configure
from tests.saml.idp import KeyPair
from tests.statements import statements

WRITES = ("INSERT", "UPDATE", "DELETE")


def _failures(sso: Sso) -> list[dict[str, object]]:
    with sso.db.reading() as session:
        return [e.changes for e in session.scalars(select(AuditEvent).where(
            AuditEvent.org_id == sso.org.org.id, AuditEvent.action == "sso.login_failed").order_by(AuditEvent.seq))]


def _events(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


GARBAGE = [{"SAMLResponse": "not base64!"}, {"SAMLResponse": "PG5vdD54bWw="}, {},
           {"SAMLResponse": base64.b64encode(b"<html><body>hello</body></html>").decode()}]


def test_unparseable_acs_posts_are_counted_and_logged_not_audited(sso: Sso, caplog: pytest.LogCaptureFixture) -> None:
    """The attacker's move: post junk to the ACS in a loop, each hoping for a row in the audit chain."""
    before = _events(sso)
    caplog.set_level(logging.WARNING, logger="identity.saml")
    with statements(sso.db) as sent:
        for _ in range(5):
            for data in GARBAGE:
                assert sso.client.post("/saml/acme/acs", data=data).status_code == 400
    assert _events(sso) == before
    assert not [s for s in sent if s.startswith(WRITES)], sent
    counter = sso.client.application.extensions["saml.refusals"]
    assert counter.totals[("unparseable", "acme", "")] == 20
    lines = [r for r in caplog.records if r.getMessage().startswith("unparseable post to the SAML ACS")]
    assert len(lines) == 1  # one line a minute, not one a post
    with clock.frozen_at(clock.now() + WINDOW + dt.timedelta(seconds=1)):
        sso.client.post("/saml/acme/acs", data=GARBAGE[0])
    lines = [r for r in caplog.records if r.getMessage().startswith("unparseable post to the SAML ACS")]
    assert len(lines) == 2 and lines[-1].since_last_line == 20  # the rate: 19 left out, plus this one


def test_forged_responses_reach_the_audit_log_once_a_minute_with_a_count(sso: Sso, other_keys: KeyPair) -> None:
    """Well-formed but unsigned by the IdP: anybody can make them, so they are bounded."""
    for _ in range(10):
        assert sso.post(sso.response(signer=other_keys)).status_code == 400
    assert _failures(sso) == [{"reason": "invalid_signature"}]
    with clock.frozen_at(clock.now() + WINDOW + dt.timedelta(seconds=1)):
        assert sso.post(sso.response(signer=other_keys)).status_code == 400
    assert _failures(sso)[-1] == {"reason": "invalid_signature", "left_out_since_last": 9}


def test_a_replayed_assertion_is_audited_once_a_minute_not_once_a_post(sso: Sso) -> None:
    genuine = sso.response(name_id="amy@acme.test")
    assert sso.post(genuine).status_code == 303
    for _ in range(10):
        assert sso.post(genuine).status_code == 400
    assert _failures(sso) == [{"reason": "replayed"}]


def test_refusals_of_what_the_idp_signed_stay_audited_each_time(sso: Sso) -> None:
    """Bounded by the IdP: each signed assertion is refused once, its id kept by the replay cache."""
    configure(sso.db, sso.org.org.slug, sso.idp, jit=False)
    for name in ("one@acme.test", "two@acme.test", "three@acme.test"):
        assert sso.post(sso.response(name_id=name)).status_code == 403
    assert _failures(sso) == [{"reason": "user_not_provisioned"}] * 3


# ---- pending AuthnRequests: capped per client address -----------------------------------------

def _pending(sso: Sso) -> int:
    with sso.db.reading() as session:
        return session.scalar(select(func.count()).select_from(SamlPendingRequest)) or 0


def test_pending_sign_ins_are_capped_per_client_address(sso: Sso, monkeypatch: pytest.MonkeyPatch) -> None:
    """The attacker's move: GET /saml/acme/login in a loop, each a row in saml_pending_requests."""
    monkeypatch.setattr(once, "PURGE_PROBABILITY", 0.0)
    sso.client.application.config["SAML_PENDING_REQUESTS_PER_ADDRESS"] = 3
    for _ in range(3):
        sso.start_login()
    for _ in range(5):
        refused = sso.client.get("/saml/acme/login")
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "600"
    assert _pending(sso) == 3
    # Another address (a /64 of its own) is not held up...
    other = sso.client.application.test_client()
    assert other.get("/saml/acme/login", environ_base={"REMOTE_ADDR": "2001:db8:1:2::7"}).status_code == 302
    assert other.get("/saml/acme/login", environ_base={"REMOTE_ADDR": "2001:db8:1:2::8"}).status_code == 302
    with sso.db.reading() as session:
        assert session.scalars(select(SamlPendingRequest.client_address).where(
            SamlPendingRequest.client_address != "127.0.0.1")).all() == ["2001:db8:1:2::/64"] * 2
    # ...and the first one may start again once its requests expire.
    with clock.frozen_at(clock.now() + once.PENDING_REQUEST_TTL + dt.timedelta(seconds=1)):
        assert sso.client.get("/saml/acme/login").status_code == 302


@pytest.mark.parametrize(("hops", "other_client"), [(0, 429), (1, 302)], ids=["off", "one-proxy"])
def test_behind_a_load_balancer_the_pending_cap_counts_each_forwarded_client(sso: Sso, hops: int,
                                                                             other_client: int) -> None:
    """DESIGN.md 7: app processes behind a load balancer, every request from its address. Without
    TRUSTED_PROXY_HOPS, a hundred anonymous GETs of /login held up every org's SP-initiated sign-in;
    with it, the address the balancer appended to X-Forwarded-For is counted. Off (the default), the
    header is ignored, since a client reaching the service directly writes what it likes there."""
    app = create_app({"DATABASE": sso.db, "DATABASE_URL": sso.db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": BASE_URL, "TESTING": True, "TRUSTED_PROXY_HOPS": hops,
                      "SAML_PENDING_REQUESTS_PER_ADDRESS": 3})

    def through_the_balancer(client: str) -> int:
        return app.test_client().get("/saml/acme/login", environ_base={
            "REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"198.51.100.66, {client}"}).status_code

    assert [through_the_balancer("203.0.113.7") for _ in range(4)] == [302, 302, 302, 429]
    assert through_the_balancer("203.0.113.8") == other_client
    with sso.db.reading() as session:
        counted = set(session.scalars(select(SamlPendingRequest.client_address)))
    assert counted == ({"10.0.0.2"} if hops == 0 else {"203.0.113.7", "203.0.113.8"})


def test_a_capped_address_still_completes_the_sign_ins_it_started(sso: Sso) -> None:
    sso.client.application.config["SAML_PENDING_REQUESTS_PER_ADDRESS"] = 1
    request_id = sso.start_login()
    assert sso.client.get("/saml/acme/login").status_code == 429
    assert sso.post(sso.response(in_response_to=request_id)).status_code == 303


# ---- /me and /logout without a session --------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [("GET", "/me"), ("GET", "/saml/acme/logout"),
                                              ("POST", "/saml/acme/logout")])
def test_without_a_session_me_and_logout_send_no_statement(sso: Sso, method: str, path: str) -> None:
    with statements(sso.db) as sent:
        answer = sso.client.open(path, method=method)
        assert answer.status_code in (200, 401)
    assert sent == []


@pytest.mark.parametrize(("method", "path"), [("GET", "/me"), ("GET", "/saml/acme/logout"),
                                              ("POST", "/saml/acme/logout")])
def test_with_an_ended_or_forged_session_cookie_they_write_nothing(sso: Sso, method: str, path: str) -> None:
    assert sso.sp_login(name_id="amy@acme.test").status_code == 303
    old = sso.client.get_cookie("identity_session").value
    sso.sign_out()
    for cookie in (old, "forged.value"):
        sso.client.set_cookie("identity_session", cookie)
        with statements(sso.db) as sent:
            assert sso.client.open(path, method=method).status_code in (200, 401, 403)
        assert not [s for s in sent if s.startswith(WRITES)], sent
