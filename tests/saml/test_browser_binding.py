"""An SP-initiated sign-in completes only in the browser that started it (login CSRF, session swap).

The attack: Mallory starts a sign-in in her own browser, authenticates at the IdP as herself, and
has the victim's browser post the genuine, signed response (an auto-submitting form on her page).
Without the binding, the victim would be signed in to Mallory's account.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit.models import AuditEvent
from identity import users
from identity.db import Database
from identity.web.app import create_app
from saml import binding
from tests.saml.conftest import Sso
from tests.saml.idp import Options, TestIdP, post_form
from tests.saml.test_refusals import _users, assert_refused

PATH = "/saml/acme/"


def _binding_header(answer: Any) -> str:
    return next(v for v in answer.headers.getlist("Set-Cookie") if v.startswith(f"{binding.COOKIE}="))


def _attacker_starts_login(sso: Sso) -> tuple[FlaskClient, str]:
    """Mallory's own browser starts a sign-in; return it and the AuthnRequest id the IdP answers."""
    mallory = sso.client.application.test_client()
    answer = mallory.get("/saml/acme/login")
    return mallory, TestIdP.authn_request_id(answer.headers["Location"])


def _mallory(sso: Sso) -> Any:
    with sso.db.reading() as session:
        return users.find_by_user_name(session, sso.org.org.id, "mallory@acme.test")


def test_login_sets_an_httponly_cookie_scoped_to_the_orgs_saml_paths_for_the_requests_lifetime(sso: Sso) -> None:
    header = _binding_header(sso.client.get("/saml/acme/login"))
    assert f"Path={PATH}" in header and "HttpOnly" in header and "Max-Age=600" in header
    # BASE_URL is plain http here: SameSite=None would be dropped without Secure, so no SameSite at all.
    assert "SameSite" not in header and "Secure" not in header


def test_over_https_the_cookie_is_samesite_none_and_secure_so_the_idps_post_carries_it(db: Database, sso: Sso) -> None:
    app: Flask = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                             "BASE_URL": "https://id.example.test/prefix", "TESTING": True})
    header = _binding_header(app.test_client().get("/prefix/saml/acme/login"))  # the proxy passes the path on
    assert "SameSite=None" in header and "Secure" in header and "HttpOnly" in header
    assert "Path=/prefix/saml/acme/" in header


def test_sign_in_in_the_browser_that_started_it_succeeds_and_clears_the_binding(sso: Sso) -> None:
    request_id = sso.start_login()
    answer = sso.post(sso.response(in_response_to=request_id))
    assert answer.status_code == 303, answer.data
    assert sso.client.get("/me").json["userName"] == "alice@acme.test"
    assert "Max-Age=0" in _binding_header(answer) or "Expires=Thu, 01 Jan 1970" in _binding_header(answer)
    assert sso.client.get_cookie(binding.COOKIE, path=PATH) is None


def test_response_posted_into_a_browser_without_the_binding_is_refused(sso: Sso) -> None:
    mallory, request_id = _attacker_starts_login(sso)
    xml = sso.response(name_id="mallory@acme.test", in_response_to=request_id)
    before = _users(sso.db)
    answer = sso.post(xml)  # the victim's browser, which never went to /login
    assert answer.status_code == 403 and b"not started in this browser" in answer.data
    assert_refused(sso, answer, "browser_binding_missing", before)
    assert _mallory(sso) is None
    # The refusal used up the request and the assertion: Mallory cannot use them afterwards either.
    assert mallory.post("/saml/acme/acs", data=post_form(xml)).status_code == 400


@pytest.mark.parametrize("wrong", ["victims own login", "forged value", "another secret key"])
def test_response_posted_into_a_browser_with_a_wrong_binding_is_refused(sso: Sso, wrong: str) -> None:
    _mallory_browser, request_id = _attacker_starts_login(sso)
    if wrong == "victims own login":  # the victim has a sign-in of their own pending in another tab
        sso.start_login()
    else:
        value = ("0:AAAAAAAAAAAAAAAAAAAAAA" if wrong == "forged value" else binding.with_request(
            "another-secret", sso.org.org.id, request_id, None, dt.datetime.now(dt.UTC), dt.timedelta(minutes=10)))
        sso.client.set_cookie(binding.COOKIE, value, path=PATH)
    before = _users(sso.db)
    answer = sso.post(sso.response(name_id="mallory@acme.test", in_response_to=request_id))
    assert_refused(sso, answer, "browser_binding_mismatch", before)
    assert _mallory(sso) is None


def test_the_refusal_event_carries_no_binding_secret(sso: Sso) -> None:
    _mallory_browser, request_id = _attacker_starts_login(sso)
    sso.start_login()
    cookie = sso.client.get_cookie(binding.COOKIE, path=PATH).value
    sso.post(sso.response(name_id="mallory@acme.test", in_response_to=request_id))
    with sso.db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.login_failed")
                                .order_by(AuditEvent.seq.desc())).first()
    assert event.changes == {"reason": "browser_binding_mismatch"} and event.outcome == "failure"
    assert cookie.split(":")[-1] not in str((event.changes, event.target_display, event.target_id))


def test_two_logins_started_in_one_browser_both_complete(sso: Sso) -> None:
    first, second = sso.start_login(next_path="/first"), sso.start_login(next_path="/second")
    answer = sso.post(sso.response(name_id="amy@acme.test", in_response_to=second))
    assert answer.status_code == 303 and answer.headers["Location"] == "/second"
    assert sso.client.get_cookie(binding.COOKIE, path=PATH) is not None  # the first tab's binding stays
    sso.sign_out()
    answer = sso.post(sso.response(name_id="amy@acme.test", in_response_to=first))
    assert answer.status_code == 303 and answer.headers["Location"] == "/first"
    assert sso.client.get("/me").json["userName"] == "amy@acme.test"


def test_the_cookie_stays_bounded_the_oldest_login_giving_way(sso: Sso) -> None:
    ids = [sso.start_login() for _ in range(binding.MAX_ENTRIES + 2)]
    value = sso.client.get_cookie(binding.COOKIE, path=PATH).value
    assert value.count(".") == binding.MAX_ENTRIES - 1 and len(value) < 400
    assert_refused(sso, sso.post(sso.response(in_response_to=ids[0])), "browser_binding_mismatch")
    assert sso.post(sso.response(in_response_to=ids[-1])).status_code == 303


def test_refusal_for_another_reason_also_clears_the_used_binding(sso: Sso) -> None:
    from tests.saml.conftest import configure

    configure(sso.db, sso.org.org.slug, sso.idp, jit=False)
    request_id = sso.start_login()
    assert_refused(sso, sso.post(sso.response(in_response_to=request_id)), "user_not_provisioned")
    assert sso.client.get_cookie(binding.COOKIE, path=PATH) is None


def test_idp_initiated_login_needs_no_binding_and_leaves_pending_ones_alone(sso: Sso) -> None:
    assert sso.post(sso.response(name_id="dave@acme.test")).status_code == 303  # a fresh browser
    sso.sign_out()
    request_id = sso.start_login()
    answer = sso.post(sso.response(name_id="dave@acme.test"))  # IdP-initiated while an SP login is pending
    assert answer.status_code == 303
    assert not any(v.startswith(binding.COOKIE) for v in answer.headers.getlist("Set-Cookie"))
    sso.sign_out()
    assert sso.post(sso.response(name_id="dave@acme.test", in_response_to=request_id)).status_code == 303


def test_https_sign_in_with_the_binding_completes(db: Database, sso: Sso) -> None:
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": "https://id.example.test", "TESTING": True})
    browser, stranger = app.test_client(), app.test_client()
    request_id = sso.idp.authn_request_id(browser.get("/saml/acme/login").headers["Location"])

    def response() -> bytes:
        return sso.idp.response("https://id.example.test/saml/acme/metadata", "https://id.example.test/saml/acme/acs",
                                Options(in_response_to=request_id))

    assert stranger.post("/saml/acme/acs", data=post_form(response())).status_code == 403
    request_id = sso.idp.authn_request_id(browser.get("/saml/acme/login").headers["Location"])
    assert browser.post("/saml/acme/acs", data=post_form(response())).status_code == 303
