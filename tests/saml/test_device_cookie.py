"""The device cookie (OWASP "Slow Down Online Guessing Attacks with Device Cookies"): a browser that
has signed in as a member asks for that member's links in a bucket of its own, so that a stranger who
fills the all-clients ceiling of the address from many client addresses does not lock its owner out,
and another org's member with the same address gets no bucket of her own for this one's links."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from audit import Actor
from identity import orgs
from identity.db import Database
from identity.orgs import NewOrg
from saml import web
from saml.connection import SpUrls
from saml.device_cookies import Member
from tests.factories import provision
from tests.saml.conftest import Sso, configure, form_token
from tests.saml.idp import TestIdP
from tests.saml.test_sign_in_by_email import BASE_URL, ask, ask_on_the_sign_in_page, make_app, use
from tests.smtp import Inbox, smtp_server

OWNER = "owner@acme.test"  # the org's owner (tests.conftest.acme): her link is her break-glass sign-in
COOKIE = "identity_device"
LIFETIME = dt.timedelta(days=90)  # saml.device_cookies.LIFETIME


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as served:
        yield served


@pytest.fixture
def app(db: Database, smtp: tuple[Inbox, int]) -> Flask:
    return make_app(db, smtp, SIGN_IN_EMAIL_MIN_SECONDS=0, SIGN_IN_LINKS_PER_CLIENT=20)


def at(app: Flask, client: str) -> FlaskClient:
    """A fresh browser (no cookies) at client address `client`."""
    browser = app.test_client()
    browser.environ_base.update(REMOTE_ADDR=client)
    return browser


def signed_in_browser(app: Flask, inbox: Inbox, email: str, client: str) -> FlaskClient:
    """A browser that asked for a link for `email` and used it: it now holds the device cookie."""
    browser = at(app, client)
    before = len(inbox.messages)
    assert ask(browser, email).status_code == 200
    inbox.wait(before + 1)
    assert use(browser, inbox.link()).status_code == 303
    return browser


def device_cookie(browser: FlaskClient) -> str:
    cookie = browser.get_cookie(COOKIE)
    return cookie.value if cookie is not None else ""


def another_device(genuine: str) -> str:
    """`genuine` with its device id replaced: its MACs no longer match (a forger without SECRET_KEY)."""
    parts = genuine.split(".")
    return ".".join([*parts[:2], "forged" + parts[2][6:], *parts[3:]]) if len(parts) > 3 else "v1.0.forged.x"


def test_a_stranger_from_many_clients_does_not_lock_the_owners_browser_out(
        app: Flask, db: Database, acme: NewOrg, system: Actor, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    provision(db, system, acme.org.id, "sam@acme.test")
    owner = signed_in_browser(app, inbox, OWNER, "192.0.2.10")  # one ask counted: 29 left of 30
    colleague = signed_in_browser(app, inbox, "sam@acme.test", "192.0.2.11")
    # The stranger: 3 asks (his share) from each of 10 client addresses; the ceiling is reached.
    answers = [ask(at(app, f"2001:db8:{n}::1"), OWNER).status_code for n in range(10) for _ in range(3)]
    assert answers.count(200) == 29 and answers[-1] == 429
    inbox.wait(31)
    assert ask(at(app, "198.51.100.77"), OWNER).status_code == 429  # a browser without the cookie
    forged = at(app, "198.51.100.78")
    genuine = device_cookie(owner)
    forged.set_cookie(COOKIE, another_device(genuine))
    assert ask(forged, OWNER).status_code == 429
    assert ask(colleague, OWNER).status_code == 429  # his cookie is for himself, not her
    # Her own browser holds the cookie: its asks are counted in its own bucket, and her link works.
    assert ask(owner, OWNER).status_code == 200
    inbox.wait(32)
    assert inbox.messages[-1]["To"] == OWNER
    assert use(owner, inbox.link()).status_code == 303
    assert owner.get("/me").json["userName"] == OWNER
    signed_out = at(app, "192.0.2.10")  # her browser signed out, the cookie kept: `/` counts it the same way
    signed_out.set_cookie(COOKIE, device_cookie(owner))
    assert ask_on_the_sign_in_page(signed_out, who=OWNER).status_code == 200
    assert ask_on_the_sign_in_page(at(app, "198.51.100.79"), who=OWNER).status_code == 429
    inbox.wait(33)


def test_the_cookie_is_httponly_lax_for_the_whole_site_and_names_no_address(
        app: Flask, acme: NewOrg, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    browser = at(app, "192.0.2.10")
    ask(browser, OWNER)
    path = inbox.wait(1) and inbox.link().removeprefix(BASE_URL)
    answer = browser.post(path, data={"csrf_token": form_token(browser.get(path)) or ""})
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith(f"{COOKIE}="))
    attributes = set(cookie.split("; "))
    assert {"Path=/", "HttpOnly", "SameSite=Lax"} <= attributes and "Secure" not in attributes  # http BASE_URL
    assert f"Max-Age={int(LIFETIME.total_seconds())}" in attributes
    assert "owner" not in cookie.lower() and "acme" not in cookie.lower()
    assert acme.org.id not in cookie and acme.owner.id not in cookie  # the member's ids are MACed, not shown


def test_a_saml_sign_in_makes_the_browser_known_too(app: Flask, acme: NewOrg, sso: Sso,
                                                     smtp: tuple[Inbox, int]) -> None:
    """The owner signs in through her IdP every day; the day it is down, her browser asks for her
    break-glass link in its own bucket, whatever a stranger has asked for."""
    assert sso.sp_login(name_id=OWNER).status_code == 303
    answers = [ask(at(app, f"2001:db8:{n}::1"), OWNER).status_code for n in range(11) for _ in range(3)]
    assert answers.count(200) == 30
    assert ask(at(app, "198.51.100.77"), OWNER).status_code == 429
    assert ask(sso.client, OWNER).status_code == 200
    smtp[0].wait(31)  # every mail delivered before the database goes


def test_over_https_under_a_path_the_cookie_is_secure_and_under_that_path(db: Database,
                                                                          smtp: tuple[Inbox, int]) -> None:
    app = make_app(db, smtp, BASE_URL="https://sso.example.test/identity")
    with app.test_request_context("/identity/login/link/x", base_url="https://sso.example.test/identity"):
        response = Response()
        web.set_device_cookie(response, [Member("org", "user")])
        web.set_device_cookie(nothing := Response(), [])
    attributes = set(response.headers["Set-Cookie"].split("; "))
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/identity/"} <= attributes
    assert "Set-Cookie" not in nothing.headers  # a member without an address: no cookie


def test_on_the_sign_in_page_a_cookie_for_one_of_the_members_it_would_mail_mails_that_member_only(
        app: Flask, db: Database, system: Actor, acme: NewOrg, idp: TestIdP, smtp: tuple[Inbox, int]) -> None:
    """`/` mails every org where the address is a member: Rival's owner, whose IdP signs her in as
    Rival's member with the victim's address, holds a cookie for that member, not for Acme's; counted
    in her device's bucket, her asks must not carry Acme's links to the victim past the ceiling: they
    mail Rival's member only (saml.links._ask)."""
    inbox, _ = smtp
    with db.transaction() as session:
        rival = orgs.create_org(session, system, "Rival", owner_email="mallory@rival.test")
    configure(db, rival.org.slug, idp, jit=True, allow_idp_initiated=True)
    answers = [ask(at(app, f"2001:db8:{n}::1"), OWNER).status_code for n in range(10) for _ in range(3)]
    assert answers.count(200) == 30
    inbox.wait(30)
    mallory = at(app, "203.0.113.1")
    sso = Sso(db, rival, idp, mallory, SpUrls.of(BASE_URL, rival.org.slug))
    assert sso.sp_login(name_id=OWNER).status_code == 303  # JIT: Rival's member "owner@acme.test"
    assert device_cookie(mallory)
    signed_out = at(app, "203.0.113.1")  # her browser signed out, the cookie kept
    signed_out.set_cookie(COOKIE, device_cookie(mallory))
    assert ask_on_the_sign_in_page(signed_out, who=OWNER).status_code == 200  # Acme's and Rival's member
    assert [m["Subject"] for m in inbox.wait(31)[30:]] == ["Sign in to Rival"]  # her cookie's member only
    assert ask(mallory, OWNER, org=rival.org.slug).status_code == 200  # her own org's member: her cookie's
    assert [m["Subject"] for m in inbox.wait(32)[30:]] == ["Sign in to Rival"] * 2
