"""Sign-in by email for orgs without SSO (issue 16), asked on /login/email or on the sign-in page `/`:
the same answer for any address, a mail only for a member, links single-use, short-lived and bound to
the browser that asked, rate limits in the database that do not tell a member from a stranger."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import orgs
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from tests.conftest import ReadingClient
from tests.factories import actions, provision
from tests.saml.conftest import configure, form_token
from tests.saml.idp import TestIdP
from tests.smtp import Inbox, smtp_server

BASE_URL = "http://localhost"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as served:
        yield served


def make_app(db: Database, smtp: tuple[Inbox, int], **settings: Any) -> Flask:
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min", "BASE_URL": BASE_URL,
                      "TESTING": True, "SMTP_URL": f"smtp://127.0.0.1:{smtp[1]}", "SIGN_IN_EMAIL_MIN_SECONDS": 0.2,
                      "SIGN_IN_LINKS_PER_CLIENT": 6, **settings})
    app.test_client_class = ReadingClient
    return app


@pytest.fixture
def app(db: Database, smtp: tuple[Inbox, int]) -> Flask:
    return make_app(db, smtp)


def browser(app: Flask) -> FlaskClient:
    return app.test_client()


def ask(client: FlaskClient, email: str, org: str = "acme") -> Any:
    """Open the form and send it, as a person does."""
    page = client.get("/login/email")
    assert page.status_code == 200
    return client.post("/login/email", data={"csrf_token": form_token(page) or "", "org": org, "email": email})


def ask_on_the_sign_in_page(client: FlaskClient, **fields: str) -> Any:
    """Open `/` and post its form with `fields`, as a person does (step 1: `who`; step 2: `org` and `email`)."""
    page = client.get("/")
    return client.post("/", data={"csrf_token": form_token(page) or "", **fields})


def shape(response: Any, email: str) -> str:
    """The answer with what differs by nature (the address typed, the request id) taken out."""
    text = response.get_data(as_text=True).replace(email, "EMAIL")
    return re.sub(r"Request id: [0-9a-f]+", "Request id: X", text)


def use(client: FlaskClient, link: str) -> Any:
    path = link.removeprefix(BASE_URL)
    page = client.get(path)
    return client.post(path, data={"csrf_token": form_token(page) or ""})


def test_known_and_unknown_addresses_get_the_same_answer_and_only_a_member_a_mail(
        app: Flask, db: Database, acme: NewOrg, system: Actor, smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    provision(db, system, acme.org.id, "mia@acme.test")
    client = browser(app)
    started = time.monotonic()
    known = ask(client, "mia@acme.test")
    known_seconds = time.monotonic() - started
    stranger = browser(app)
    started = time.monotonic()
    unknown = ask(stranger, "nobody@acme.test")
    unknown_seconds = time.monotonic() - started
    nowhere = ask(browser(app), "mia@acme.test", org="no-such-org")
    assert known.status_code == unknown.status_code == nowhere.status_code == 200
    assert shape(known, "mia@acme.test") == shape(unknown, "nobody@acme.test")
    for answer in (known, unknown):
        cookie = answer.headers.getlist("Set-Cookie")
        assert [c.split("=")[0] for c in cookie] == ["identity_link_browser"]
    assert known_seconds >= 0.2 and unknown_seconds >= 0.2  # both wait for the same floor
    assert inbox.wait(1)[0]["To"] == "mia@acme.test"
    time.sleep(0.3)
    assert len(inbox.messages) == 1  # none for the stranger
    assert use(client, inbox.link()).status_code == 303
    assert client.get("/me").json["userName"] == "mia@acme.test"
    assert client.get(inbox.link().removeprefix(BASE_URL)).status_code == 400  # single use
    log = actions(db, acme.org.id)
    assert "sso.login_link_issued" in log and "mail.sent" in log and log[-1] == "sso.login_succeeded"


def test_the_link_works_only_in_the_browser_that_asked(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                       smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    provision(db, system, acme.org.id, "ned@acme.test")
    asking, other = browser(app), browser(app)
    ask(asking, "ned@acme.test")
    ask(other, "someone@acme.test")  # the other browser has a binding cookie of its own
    link = inbox.wait(1) and inbox.link()
    refused = use(other, link)
    assert refused.status_code == 400 and b"browser where it was asked" in refused.data
    assert other.get("/me").status_code == 401
    assert actions(db, acme.org.id)[-1] == "sso.login_failed"
    assert use(browser(app), link).status_code == 400  # no cookie at all
    assert use(asking, link).status_code == 303  # still unused: the asking browser signs in
    assert asking.get("/me").json["userName"] == "ned@acme.test"


def test_the_link_is_short_lived(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                 smtp: tuple[Inbox, int]) -> None:
    inbox, _ = smtp
    provision(db, system, acme.org.id, "oli@acme.test")
    client = browser(app)
    ask(client, "oli@acme.test")
    path = (inbox.wait(1) and inbox.link()).removeprefix(BASE_URL)
    form = {"csrf_token": form_token(client.get(path)) or ""}
    with clock.frozen_at(clock.now() + dt.timedelta(minutes=16)):
        assert client.get(path).status_code == 400
        assert client.post(path, data=form).status_code == 400
    assert client.get("/me").status_code == 401


def test_rate_limited_per_address_and_per_client(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                 smtp: tuple[Inbox, int]) -> None:
    provision(db, system, acme.org.id, "pia@acme.test")
    for email in ("pia@acme.test", "nobody@acme.test"):  # the same limit whether the address exists
        answers = [ask(browser(app), email).status_code for _ in range(4)]
        assert answers == [200, 200, 200, 429], email
    # Six requests from this client so far were counted: one more address is refused too.
    assert ask(browser(app), "third@acme.test").status_code == 429
    with clock.frozen_at(clock.now() + dt.timedelta(minutes=16)):
        assert ask(browser(app), "pia@acme.test").status_code == 200


def test_mail_to_one_address_from_many_clients_is_bounded(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                           smtp: tuple[Inbox, int]) -> None:
    """Each client address has its own share of asks for an address (a stranger's asks no longer lock
    the owner's browser out); all clients together have a higher ceiling, the bound on her mail."""
    inbox, _ = smtp
    app.config.update(SIGN_IN_EMAIL_MIN_SECONDS=0, SIGN_IN_LINKS_PER_ADDRESS_ALL_CLIENTS=7)
    provision(db, system, acme.org.id, "pia@acme.test")

    def from_address(client: str) -> FlaskClient:
        at = browser(app)
        at.environ_base.update(REMOTE_ADDR=client)
        return at

    first = from_address("198.51.100.1")
    assert [ask(first, "pia@acme.test").status_code for _ in range(4)] == [200, 200, 200, 429]
    others = [ask(from_address(f"198.51.100.{n}"), "pia@acme.test").status_code for n in range(2, 7)]
    assert others == [200, 200, 200, 200, 429]  # a refused ask is not counted: 3 + 4 = 7, the ceiling
    inbox.wait(7)
    time.sleep(0.3)
    assert len(inbox.messages) == 7


def test_the_form_must_come_from_our_page(app: Flask, acme: NewOrg) -> None:
    client = browser(app)
    client.get("/login/email")
    assert client.post("/login/email", data={"org": "acme", "email": "a@acme.test"}).status_code == 403
    assert client.post("/login/email", data={"csrf_token": "forged", "org": "acme",
                                             "email": "a@acme.test"}).status_code == 403


def test_no_link_for_a_member_when_the_org_requires_sso(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                        smtp: tuple[Inbox, int]) -> None:
    from identity.models import Org

    provision(db, system, acme.org.id, "quinn@acme.test")
    with db.transaction() as session:  # as orgs.set_require_sso leaves it, without configuring an IdP here
        session.get_one(Org, acme.org.id).require_sso = True
    assert ask(browser(app), "quinn@acme.test").status_code == 200
    time.sleep(0.3)
    assert smtp[0].messages == []


BY_ORG = {"org": "acme", "email": "{address}"}  # the sign-in page's second step
BY_ADDRESS = {"who": "{address}"}  # its first: the orgs to mail are those the address is a member of


@pytest.mark.parametrize("steps", [[BY_ORG] * 3 + [BY_ADDRESS], [BY_ADDRESS] * 3 + [BY_ORG]],
                         ids=["by-org-then-address", "by-address-then-org"])
def test_the_sign_in_pages_limit_does_not_tell_a_member_from_a_stranger(
        app: Flask, db: Database, acme: NewOrg, system: Actor, steps: list[dict[str, str]]) -> None:
    """`/` counts an ask once, under the address alone (saml.links.request_sign_in_links): counted
    under the org typed in one step and the orgs the address is a member of in the other, the two
    steps shared a counter exactly for a member (three asks by org, then one by address, answered
    429 for a member and 200 for a stranger), and a member of two orgs was counted twice an ask."""
    app.config.update(SIGN_IN_EMAIL_MIN_SECONDS=0, SIGN_IN_LINKS_PER_CLIENT=100)
    with db.transaction() as session:
        globex = orgs.create_org(session, system, "Globex", owner_email="owner@globex.test")
    for org_id in (acme.org.id, globex.org.id):
        provision(db, system, org_id, "mia@acme.test")

    def answers(address: str) -> list[int]:
        return [ask_on_the_sign_in_page(browser(app), **{name: value.format(address=address)
                                                         for name, value in step.items()}).status_code
                for step in steps]

    assert answers("mia@acme.test") == answers("nobody@acme.test") == [200, 200, 200, 429]


def test_asking_twice_keeps_the_first_link_working_in_this_browser(
        app: Flask, db: Database, acme: NewOrg, system: Actor, smtp: tuple[Inbox, int]) -> None:
    """A second ask reuses the browser's id from its cookie; set for /login/ only, `/` never read it
    back, made a new id and overwrote the cookie: the first mail's link was refused in the very
    browser that asked for it. Both pages now share one cookie, for the whole site."""
    inbox, _ = smtp
    provision(db, system, acme.org.id, "mia@acme.test")
    client = browser(app)
    assert ask_on_the_sign_in_page(client, who="mia@acme.test").status_code == 200
    answer = ask_on_the_sign_in_page(client, org="acme", email="mia@acme.test")
    cookie = next(c for c in answer.headers.getlist("Set-Cookie") if c.startswith("identity_link_browser="))
    assert {"Path=/", "HttpOnly", "SameSite=Strict"} <= set(cookie.split("; "))
    assert ask(client, "mia@acme.test").status_code == 200  # /login/email, in the same browser
    inbox.wait(3)
    for index in range(3):
        assert use(client, inbox.link(index)).status_code == 303, f"link {index} refused in the browser that asked"
        assert client.get("/me").json["userName"] == "mia@acme.test"


BALANCER = "10.0.0.2"  # the load balancer's address: REMOTE_ADDR of every request that comes through it


def behind_the_balancer(app: Flask, client: str) -> FlaskClient:
    """A browser at `client` reaching the app through one load balancer, which appends `client` to
    the X-Forwarded-For the browser sent (here a forged one, as any client may write)."""
    through = browser(app)
    through.environ_base.update(REMOTE_ADDR=BALANCER, HTTP_X_FORWARDED_FOR=f"198.51.100.66, {client}")
    return through


@pytest.mark.parametrize(("hops", "seen_as", "last"), [(0, BALANCER, 429), (1, "203.0.113.7", 200)],
                         ids=["off", "one-proxy"])
def test_behind_a_load_balancer_the_client_is_the_address_it_forwards(
        db: Database, acme: NewOrg, system: Actor, smtp: tuple[Inbox, int], hops: int, seen_as: str,
        last: int) -> None:
    """DESIGN.md 7: app processes behind a load balancer. Seen from the app, every client was the
    balancer: one per-client limit for everybody, and the balancer's address in every audit event.
    TRUSTED_PROXY_HOPS=1 reads the address the balancer appended to X-Forwarded-For (not what the
    client wrote before it); off, the default, the header is ignored: a client that reaches the
    service directly could write any address there."""
    app = make_app(db, smtp, TRUSTED_PROXY_HOPS=hops, SIGN_IN_EMAIL_MIN_SECONDS=0)
    provision(db, system, acme.org.id, "mia@acme.test")
    assert ask(behind_the_balancer(app, "203.0.113.7"), "mia@acme.test").status_code == 200
    with db.reading() as session:
        issued = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.login_link_issued")).one()
    assert issued.ip == seen_as
    # Six asks a client may make (SIGN_IN_LINKS_PER_CLIENT): six more people behind the balancer.
    answers = [ask(behind_the_balancer(app, f"203.0.113.{n}"), f"person{n}@acme.test").status_code
               for n in range(10, 16)]
    assert answers == [200] * 5 + [last]


# --- Addresses compare through the one key (DESIGN.md 5), not SQL's lower() ---------------------------------

@pytest.mark.parametrize("page", ["/login/email", "/"])
def test_a_member_is_found_by_their_email_in_another_case(app: Flask, db: Database, acme: NewOrg, system: Actor,
                                                          smtp: tuple[Inbox, int], page: str) -> None:
    """An IdP's member `jorg` has the email STRASSE@acme.test and types straße@acme.test, the same address
    under full case folding, as a userName compares (identity.names.name_key). SQL's lower() folds
    neither ß (nor, on SQLite, any letter past ASCII): no link was mailed, on either sign-in page."""
    inbox, _ = smtp
    provision(db, system, acme.org.id, "jorg", email="STRASSE@acme.test", source="scim")
    client = browser(app)
    if page == "/":
        assert ask_on_the_sign_in_page(client, who="straße@acme.test").status_code == 200
    else:
        assert ask(client, "straße@acme.test").status_code == 200
    assert [m["To"] for m in inbox.wait(1)] == ["STRASSE@acme.test"]  # the member's own address
    assert use(client, inbox.link()).status_code == 303
    assert client.get("/me").json["userName"] == "jorg"


def test_an_email_domain_in_another_case_is_sent_to_its_orgs_sso(app: Flask, db: Database, acme: NewOrg,
                                                                 system: Actor, idp: TestIdP) -> None:
    """Home-realm discovery (saml.discovery.sso_slug) finds the org by the domain of its members' emails,
    compared through the same key as the addresses: ann@STRASSE.test's org serves bob@straße.test."""
    configure(db, acme.org.slug, idp)
    provision(db, system, acme.org.id, "ann", email="ann@STRASSE.test", source="scim")
    app.config["SIGN_IN_EMAIL_MIN_SECONDS"] = 0
    answer = ask_on_the_sign_in_page(browser(app), who="bob@straße.test")
    assert answer.status_code == 200 and "/saml/acme/login" in answer.get_data(as_text=True)
