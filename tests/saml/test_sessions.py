"""The session after sign-in: cookie flags, server-side row, idle and absolute lifetime, sign-out."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import func, select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import user_profile, users
from identity.db import Database
from identity.models import SsoSession
from identity.web.app import create_app
from tests.factories import actions
from tests.saml.conftest import Sso, configure
from tests.saml.idp import Options


def _cookie_header(answer) -> str:
    return next(v for v in answer.headers.getlist("Set-Cookie") if v.startswith("identity_session="))


def _sessions(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(SsoSession)) or 0


def test_cookie_is_signed_httponly_lax_and_not_secure_on_http(sso: Sso) -> None:
    header = _cookie_header(sso.sp_login())
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Secure" not in header
    assert "Max-Age=43200" in header  # the absolute lifetime, 12 hours


@pytest.mark.parametrize("base_url", ["https://id.example.test", "HTTPS://ID.Example.test/"])
def test_cookie_is_secure_when_base_url_is_https(db: Database, sso: Sso, base_url: str) -> None:
    """However BASE_URL spells its scheme and host (identity.config.checked_base_url: `HTTPS://` went
    out without Secure, and its SP URLs in capitals)."""
    app: Flask = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                             "BASE_URL": base_url, "TESTING": True})
    client = app.test_client()
    answer = client.get("/saml/acme/login")
    request_id = sso.idp.authn_request_id(answer.headers["Location"])
    xml = sso.idp.response("https://id.example.test/saml/acme/metadata", "https://id.example.test/saml/acme/acs",
                           Options(in_response_to=request_id))
    from tests.saml.idp import post_form

    signed_in = client.post("/saml/acme/acs", data=post_form(xml))
    assert signed_in.status_code == 303, signed_in.data
    assert "Secure" in _cookie_header(signed_in)


def test_me_is_401_without_or_with_a_forged_cookie(sso: Sso) -> None:
    assert sso.client.get("/me").status_code == 401
    sso.client.set_cookie("identity_session", "forged.value")
    assert sso.client.get("/me").status_code == 401


def test_sign_out_ends_the_session_and_an_old_cookie_copy_is_refused(sso: Sso) -> None:
    sso.sp_login(name_id="amy@acme.test")
    old = sso.client.get_cookie("identity_session").value
    assert sso.client.get("/me").status_code == 200
    answer = sso.sign_out()
    assert answer.status_code == 302 and answer.headers["Location"].startswith(sso.idp.slo_url)
    assert sso.client.get("/me").status_code == 401
    sso.client.set_cookie("identity_session", old)  # replaying the cookie captured before sign-out
    assert sso.client.get("/me").status_code == 401
    assert _sessions(sso.db) == 0
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.logged_out"


def test_sign_out_redirects_to_idp_single_logout(sso: Sso) -> None:
    sso.sp_login(name_id="amy@acme.test")
    location = sso.sign_out().headers["Location"]
    assert location.startswith(sso.idp.slo_url + "?SAMLRequest=")


def test_idle_lifetime_ends_the_session(sso: Sso) -> None:
    sso.sp_login()
    later = clock.now() + dt.timedelta(minutes=61)
    with clock.frozen_at(later):
        assert sso.client.get("/me").status_code == 401


def test_use_keeps_the_session_alive_until_its_absolute_lifetime(sso: Sso) -> None:
    sso.sp_login()
    start = clock.now()
    for minutes in range(50, 12 * 60, 50):  # used every 50 minutes: never idle for an hour
        with clock.frozen_at(start + dt.timedelta(minutes=minutes)):
            assert sso.client.get("/me").status_code == 200, minutes
    with clock.frozen_at(start + dt.timedelta(hours=12, minutes=1)):
        assert sso.client.get("/me").status_code == 401


def test_deactivation_ends_the_session_for_good(sso: Sso, system: Actor) -> None:
    sso.sp_login(name_id="ben@acme.test")
    me = sso.client.get("/me").json
    with sso.db.transaction() as session:
        users.deactivate_user(session, system, sso.org.org.id, me["id"])
    assert sso.client.get("/me").status_code == 401
    assert _sessions(sso.db) == 0
    with sso.db.transaction() as session:  # reactivation does not revive the old cookie
        users.reactivate_user(session, system, sso.org.org.id, me["id"])
    assert sso.client.get("/me").status_code == 401


def test_reconfiguring_keeps_our_key_pair(sso: Sso) -> None:
    import re

    def certificates() -> list[bytes]:  # the metadata's other parts carry times (validUntil)
        return re.findall(rb"<ds:X509Certificate>([^<]+)</ds:X509Certificate>", sso.client.get("/saml/acme/metadata").data)

    first = certificates()
    configure(sso.db, sso.org.org.slug, sso.idp, jit=False)
    assert first and certificates() == first


def _signed_in_with_index(sso: Sso, name_id: str = "slo@acme.test") -> str:
    index = "_session-index-1"
    assert sso.sp_login(name_id=name_id, session_index=index).status_code == 303
    assert sso.client.get("/me").status_code == 200
    return index


def test_idp_initiated_single_logout_ends_the_session(sso: Sso) -> None:
    index = _signed_in_with_index(sso)
    query = sso.idp.logout_request_query(sso.urls.slo, "slo@acme.test", index)
    answer = sso.client.get(f"/saml/acme/slo?{query}")
    assert answer.status_code == 302, answer.data
    assert answer.headers["Location"].startswith(sso.idp.slo_url + "?SAMLResponse=")
    assert sso.client.get("/me").status_code == 401
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.logged_out"


@pytest.mark.parametrize(("signed_in_as", "logged_out_as"), [("Ann@Acme.test", "ann@acme.test"),
                                                             ("A\u030aSA@acme.test", "\u00e5sa@acme.test")],
                         ids=["case", "unicode-form"])
def test_idp_initiated_single_logout_finds_the_session_by_the_name_ids_key(sso: Sso, signed_in_as: str,
                                                                          logged_out_as: str) -> None:
    """DESIGN.md 5: NameIDs compare through one key (NFC, casefold), as sign-in compares them. Matched
    byte for byte, an IdP's logout naming the subject in another case or Unicode form was answered
    Success and the session it meant to end went on."""
    index = _signed_in_with_index(sso, signed_in_as)
    query = sso.idp.logout_request_query(sso.urls.slo, logged_out_as, index)
    answer = sso.client.get(f"/saml/acme/slo?{query}")
    assert answer.status_code == 302 and answer.headers["Location"].startswith(sso.idp.slo_url + "?SAMLResponse=")
    assert sso.client.get("/me").status_code == 401
    assert actions(sso.db, sso.org.org.id)[-1] == "sso.logged_out"


def _logouts(db: Database, org_id: str) -> list[AuditEvent]:
    with db.reading() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.org_id == org_id,
                                                             AuditEvent.action == "sso.logged_out")))


@pytest.mark.parametrize("initiated_by", ["sp", "idp"])
def test_a_sign_out_names_the_member_by_the_user_name_they_had(sso: Sso, system: Actor, initiated_by: str) -> None:
    """docs/audit.md 1: an event's actor and target displays are their names as they were at the time.
    `sso.logged_out` wrote the member's UUID in both: the one event of a member a reader could not
    attribute without the user table, and, once the userName changed, that nothing in the log named."""
    index = _signed_in_with_index(sso, "amy@acme.test")
    me = sso.client.get("/me").json
    if initiated_by == "sp":
        sso.sign_out()
    else:
        query = sso.idp.logout_request_query(sso.urls.slo, "amy@acme.test", index)
        assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 302
    with sso.db.transaction() as session:
        user_profile.update_profile(session, system, sso.org.org.id, me["id"], {"user_name": "amy.new@acme.test"})
    [logout] = _logouts(sso.db, sso.org.org.id)
    assert (logout.actor_type, logout.actor_id, logout.target_id) == ("user", me["id"], me["id"])
    assert me["userName"] == "amy@acme.test" and (logout.actor_display, logout.target_display) == (
        "amy@acme.test", "amy@acme.test")
    assert logout.changes == {"initiated_by": initiated_by}


def test_unsigned_or_forged_logout_request_is_refused(sso: Sso, other_keys) -> None:
    index = _signed_in_with_index(sso)
    for query in (sso.idp.logout_request_query(sso.urls.slo, "slo@acme.test", index, sign=False),
                  sso.idp.logout_request_query(sso.urls.slo, "slo@acme.test", index, signer=other_keys)):
        assert sso.client.get(f"/saml/acme/slo?{query}").status_code == 400
    assert sso.client.get("/me").status_code == 200
    assert sso.client.get("/saml/acme/slo").status_code == 400


def test_sign_out_without_idp_logout_endpoint_shows_a_signed_out_page(sso: Sso) -> None:
    sso.idp.slo_url = None
    configure(sso.db, sso.org.org.slug, sso.idp)
    sso.sp_login(name_id="amy@acme.test")
    answer = sso.sign_out()
    assert answer.status_code == 200 and b"signed out" in answer.data
    assert sso.client.get("/me").status_code == 401


def test_an_unverifiable_logout_response_signs_nobody_out(sso: Sso) -> None:
    sso.sp_login(name_id="amy@acme.test")
    answer = sso.client.get("/saml/acme/slo?SAMLResponse=anything")
    assert answer.status_code == 400
    assert "identity_session" not in answer.headers.get("Set-Cookie", "")
    assert sso.client.get("/me").status_code == 200
