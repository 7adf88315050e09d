"""A real browser (Debian's Chromium, driven by Playwright) against the service and a test IdP.

The service runs in a real HTTP server on http://127.0.0.1:PORT; the test IdP (tests/saml/idp.py,
which signs with signxml, not python3-saml) in another, reached by the browser as
http://idp.test:PORT: a different site, so the IdP's POST to our ACS is cross-site, as it is in
production. Chromium comes from the operating system (`make test` installs it); Playwright's own
browser download is never used. A missing Chromium fails the run rather than skipping: these
tests are the proof that the pages work in a browser.
"""

from __future__ import annotations

import base64
import itertools
import os
import shutil
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask, Response, request
from lxml import etree
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Route, expect, sync_playwright

from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from saml.cli import configure_org
from saml.connection import SpUrls
from tests.conftest import BACKENDS
from tests.live import serving
from tests.pgcluster import PostgresCluster
from tests.saml.idp import KeyPair, Options, TestIdP, b64
from tests.smtp import Inbox, smtp_server

IDP_HOST = "idp.test"  # mapped to 127.0.0.1 inside Chromium only
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root
    "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
    # no connections of its own: the machine's network is closed, and they only add noise
    "--disable-background-networking", "--disable-component-update",
    f"--host-resolver-rules=MAP {IDP_HOST} 127.0.0.1",
]


def chromium_path() -> str:
    """Return the system Chromium (or $CHROMIUM); fail, saying how to install it, when there is none."""
    found = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: `make test` installs Debian's `chromium` package "
                    "(or set CHROMIUM to a Chromium executable)", pytrace=False)
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookies carried from one test to the next."""
    made = browser.new_context()
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def console_ready(page: Page) -> None:
    """Wait until console.js has attached its handlers (it marks <html data-console="ready">).

    Only before an action that the script alone gives (Escape cancelling an inline form, a click
    that must not load a page): every other control does the same with or without the script."""
    expect(page.locator("html")).to_have_attribute("data-console", "ready")


class HeldScript:
    """console.js held back until `release`: the page as it is between its HTML and its script
    (a slow network, a busy machine), so a test can act in that window without sleeping."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.held: list[Route] = []
        page.route("**/static/console.js*", lambda route: self.held.append(route))

    def release(self) -> None:
        """Let the current page's script load (earlier pages' requests died with them)."""
        self.held[-1].continue_()  # before unroute, which would settle the held routes itself
        self.page.unroute("**/static/console.js*")
        console_ready(self.page)


@dataclass
class IdpPerson:
    """Who signs in at the test IdP next, and how the IdP answers."""

    name_id: str = "alice@acme.test"
    attributes: dict[str, list[str]] = field(default_factory=dict)
    signer: KeyPair | None = None  # None: the IdP's own key; another key forges the response


class BrowserIdP:
    """The test IdP as a web site: HTTP-Redirect SSO in, an auto-submitting HTTP-POST form out."""

    def __init__(self, idp: TestIdP, sp: SpUrls) -> None:
        self.idp, self.sp = idp, sp
        self.person = IdpPerson()
        self.requests: list[str] = []  # AuthnRequest ids received
        self.logouts = 0
        self.app = Flask("test-idp")
        self.app.add_url_rule("/sso", "sso", self._sso)
        self.app.add_url_rule("/start", "start", self._start)
        self.app.add_url_rule("/slo", "slo", self._slo)

    def _sso(self) -> Response:
        """SP-initiated: answer the AuthnRequest, after checking it asks for our SP's ACS."""
        xml = zlib.decompress(base64.b64decode(request.args["SAMLRequest"]), -15)
        authn = etree.fromstring(xml)
        assert authn.get("AssertionConsumerServiceURL") == self.sp.acs, xml
        self.requests.append(str(authn.get("ID")))
        return self._post_to_sp(str(authn.get("ID")), request.args.get("RelayState"))

    def _start(self) -> Response:
        """IdP-initiated: the user picks the app in the IdP's portal."""
        return self._post_to_sp(None, request.args.get("RelayState"))

    def _slo(self) -> Response:
        self.logouts += 1
        return Response("<!doctype html><title>Signed out at the IdP</title><p>Signed out at the IdP.</p>",
                        mimetype="text/html")

    def _post_to_sp(self, in_response_to: str | None, relay_state: str | None) -> Response:
        person = self.person
        xml = self.idp.response(self.sp.entity_id, self.sp.acs, Options(
            name_id=person.name_id, attributes=person.attributes, in_response_to=in_response_to,
            signer=person.signer))
        relay = "" if relay_state is None else \
            f"<input type='hidden' name='RelayState' value='{escape(relay_state, quote=True)}'>"
        return Response(
            "<!doctype html><html><head><title>Signing you in</title></head>"
            "<body onload='document.forms[0].submit()'>"
            f"<form method='post' action='{escape(self.sp.acs, quote=True)}'>"
            f"<input type='hidden' name='SAMLResponse' value='{escape(b64(xml), quote=True)}'>{relay}"
            "<noscript><button type='submit'>Continue</button></noscript></form></body></html>",
            mimetype="text/html")


@dataclass
class Site:
    """The service and the IdP, both served over real HTTP, and the org `acme` trusting the IdP."""

    db: Database
    org: NewOrg
    origin: str  # the service's BASE_URL: http://127.0.0.1:PORT, and its path when served under one
    idp_origin: str  # the IdP as the browser reaches it, http://idp.test:PORT
    idp: BrowserIdP

    def url(self, path: str) -> str:
        return f"{self.origin}{path}"

    def me(self, page: Page) -> tuple[int, Any]:
        """GET /me with the page's cookies (from the browser, not from a test client)."""
        answer = page.request.get(self.url("/me"))
        return answer.status, answer.json()


@pytest.fixture(scope="session")
def idp_keys() -> KeyPair:
    return KeyPair.make("browser test idp")


@contextmanager
def serving_site(db: Database, org: NewOrg, idp_keys: KeyPair, base_path: str = "", **config: Any) -> Iterator[Site]:
    """Serve the service (with `config` besides the tests' own) and the test IdP, `org` trusting it;
    with `base_path` (`/identity`), as a proxy passing that path on unchanged serves it (BASE_URL's path)."""
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": f"http://127.0.0.1{base_path}", "TESTING": True, **config})
    with serving(app, "service") as server:
        origin = server + base_path
        app.config["BASE_URL"] = origin
        sp = SpUrls.of(origin, org.org.slug)
        test_idp = TestIdP("https://idp.example.test/metadata", idp_keys)
        browser_idp = BrowserIdP(test_idp, sp)
        with serving(browser_idp.app, "test-idp") as idp_local:
            idp_origin = f"http://{IDP_HOST}:{urlsplit(idp_local).port}"
            test_idp.sso_url, test_idp.slo_url = f"{idp_origin}/sso", f"{idp_origin}/slo"
            configure_org(db, org.org.slug, test_idp.metadata(), jit=True, allow_idp_initiated=True)
            yield Site(db, org, origin, idp_origin, browser_idp)


@pytest.fixture
def site(db: Database, acme: NewOrg, idp_keys: KeyPair) -> Iterator[Site]:
    with serving_site(db, acme, idp_keys) as served:
        yield served


# The console's browser tests share one service per module and database (starting a server, an IdP
# and a database per test would cost the suite minutes): ConsoleSite, `console_site`.
_module_dbs = itertools.count()


@dataclass
class ConsoleSite(Site):
    """The Site of one test module, with the test SMTP server's inbox the service mails to."""

    inbox: Inbox = field(default_factory=Inbox)

    def sign_in_as(self, page: Page, name_id: str, attributes: dict[str, list[str]] | None = None) -> None:
        """Sign in through the console's sign-in page and the test IdP; wait until the console shows."""
        self.idp.person = IdpPerson(name_id=name_id, attributes=attributes or {})
        page.goto(self.url("/"))
        page.get_by_label("Work email or organization").fill(self.org.org.slug)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(self.url("/console/teams"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run on SQLite only unless BROWSER_DATABASES=both: a page's behaviour in Chromium
    (its links, forms, script, focus, axe) does not depend on the database behind it, and every page's
    requests and the domain under them run on both databases in tests/identity (the console's HTTP tests)
    and the other packages. The PostgreSQL half cost three minutes of test time a run (2026-12-07)."""
    if os.environ.get("BROWSER_DATABASES") == "both":
        return
    here = Path(__file__).parent
    dropped = [item for item in items if Path(str(item.path)).is_relative_to(here) and "[postgresql" in item.nodeid]
    if dropped:
        gone = set(map(id, dropped))
        items[:] = [item for item in items if id(item) not in gone]
        config.hook.pytest_deselected(items=dropped)


@pytest.fixture(scope="module", params=BACKENDS)
def module_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A fresh, migrated database of each backend, for one test module."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("console") / "identity.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
        url = cluster.create_database(f"browser_module_{next(_module_dbs)}", template="template_identity")
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def console_site(module_db: Database, idp_keys: KeyPair) -> Iterator[ConsoleSite]:
    """The service (mailing to a test SMTP server), the test IdP, and `acme` trusting it, for one module."""
    with module_db.transaction() as session:
        acme = orgs.create_org(session, system_actor("tests"), "Acme", owner_email="owner@acme.test")
    with smtp_server() as (inbox, port), serving_site(module_db, acme, idp_keys, SIGN_IN_EMAIL_MIN_SECONDS=0,
                                                      SMTP_URL=f"smtp://127.0.0.1:{port}") as served:
        yield ConsoleSite(served.db, served.org, served.origin, served.idp_origin, served.idp, inbox)
