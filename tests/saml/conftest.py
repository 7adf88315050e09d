"""SAML fixtures: a test IdP with real keys, and the org `acme` configured to trust it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from identity.db import Database
from identity.orgs import NewOrg
from saml import binding
from saml.cli import configure_org, login_link
from saml.connection import SpUrls
from tests.saml.idp import KeyPair, Options, TestIdP, post_form
from tests.saml.metadata_server import MetadataServer

BASE_URL = "http://localhost"  # the `app` fixture's BASE_URL
IDP_ENTITY_ID = "https://idp.example.test/metadata"


@pytest.fixture(scope="session")
def idp_keys() -> KeyPair:
    return KeyPair.make("test idp")


@pytest.fixture(scope="session")
def other_keys() -> KeyPair:
    return KeyPair.make("attacker")


@pytest.fixture
def idp(idp_keys: KeyPair) -> TestIdP:
    return TestIdP(IDP_ENTITY_ID, idp_keys)


@dataclass
class Sso:
    """The org `acme` with SSO configured, its SP URLs, the IdP, and shortcuts through the test client."""

    db: Database
    org: NewOrg
    idp: TestIdP
    client: FlaskClient
    urls: SpUrls

    def response(self, **options: Any) -> bytes:
        return self.idp.response(self.urls.entity_id, self.urls.acs, Options(**options))

    def start_login(self, next_path: str | None = None) -> str:
        """GET /login and return the AuthnRequest id the IdP received."""
        answer = self.client.get(f"/saml/{self.org.org.slug}/login", query_string={"next": next_path} if next_path else None)
        assert answer.status_code == 302, answer.data
        return TestIdP.authn_request_id(answer.headers["Location"])

    def post(self, xml: bytes, relay_state: str | None = None, slug: str | None = None) -> Any:
        return self.client.post(f"/saml/{slug or self.org.org.slug}/acs", data=post_form(xml, relay_state))

    def share_browser(self, other: FlaskClient) -> None:
        """Give `other` this browser's sign-in binding cookie, as if it were the same browser."""
        path = f"/saml/{self.org.org.slug}/"
        cookie = self.client.get_cookie(binding.COOKIE, path=path)
        assert cookie is not None, "start a login first"
        other.set_cookie(binding.COOKIE, cookie.value, path=path)

    def sign_out(self) -> Any:
        """Sign out as a person does: open the sign-out page, press its button (saml.csrf)."""
        return sign_out(self.client, self.org.org.slug)

    def sp_login(self, **options: Any) -> Any:
        request_id = self.start_login()
        return self.post(self.response(in_response_to=request_id, **options))


def form_token(page: Any) -> str | None:
    """The CSRF token in a form page of ours (saml.web.form_page, a console page), or None when it has none."""
    found = re.search(r"""name=['"]csrf_token['"] value=['"]([^'"]+)['"]""", page.get_data(as_text=True))
    return found.group(1) if found else None


def sign_out(client: FlaskClient, slug: str) -> Any:
    """GET the sign-out page and POST its form; without a session, the page that says so."""
    page = client.get(f"/saml/{slug}/logout")
    token = form_token(page)
    return page if token is None else client.post(f"/saml/{slug}/logout", data={"csrf_token": token})


def link_form(client: FlaskClient, token: str) -> dict[str, str]:
    """Open a sign-in link's page and return its form's fields, as its button posts them (saml.csrf)."""
    page = client.get(f"/login/link/{token}")
    return {"csrf_token": form_token(page) or ""}


def configure(db: Database, slug: str, idp: TestIdP, **kwargs: Any) -> None:
    configure_org(db, slug, idp.metadata(), **kwargs)


@pytest.fixture
def sso(db: Database, acme: NewOrg, idp: TestIdP, client: FlaskClient) -> Sso:
    configure(db, acme.org.slug, idp, jit=True, allow_idp_initiated=True)
    return Sso(db, acme, idp, client, SpUrls.of(BASE_URL, acme.org.slug))


@pytest.fixture
def metadata_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MetadataServer]:
    """An IdP's metadata URL over real HTTPS on 127.0.0.1, trusted, and allowed as a private address."""
    server = MetadataServer(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.cert_file))  # trust this server's own certificate
    monkeypatch.setenv("SAML_METADATA_ALLOW_PRIVATE", "1")  # the test IdP is on 127.0.0.1
    yield server
    server.close()


def signed_in_by_link(sso: Sso, runner: CliRunner, email: str) -> str:
    """Sign the test client in with a one-time link the CLI makes; return the session's sign-in method."""
    result = runner.invoke(login_link, ["--org", "acme", "--email", email])
    assert result.exit_code == 0, result.output
    token = result.output.strip().rsplit("/login/link/", 1)[1]
    assert sso.client.post(f"/login/link/{token}", data=link_form(sso.client, token)).status_code == 303
    return str((sso.client.get("/me").get_json() or {})["signInMethod"])
