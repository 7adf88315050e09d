"""Review s22 (second, hostile): a test that failed (xfail strict; fixed, mark gone): an IdP-initiated sign-in under BASE_URL's
path whose RelayState is the browser's path. Real app, both databases."""

from __future__ import annotations

from typing import Any

from flask import Flask

from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from saml.connection import SpUrls
from tests.saml.conftest import configure
from tests.saml.idp import Options, TestIdP, post_form

PREFIX = "/identity"


def _app(db: Database, base_url: str) -> Flask:
    return create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                       "BASE_URL": base_url, "TESTING": True})


def test_a_relay_state_under_the_base_path_lands_there_once(db: Database, acme: NewOrg, idp: TestIdP) -> None:
    base = f"http://localhost{PREFIX}"
    configure(db, acme.org.slug, idp, jit=True, allow_idp_initiated=True)
    urls = SpUrls.of(base, acme.org.slug)
    xml = idp.response(urls.entity_id, urls.acs, Options(name_id="dave@acme.test"))
    client = _app(db, base).test_client()
    answer: Any = client.post(f"{PREFIX}/saml/{acme.org.slug}/acs",
                              data=post_form(xml, f"{PREFIX}/console/members"))
    assert answer.status_code == 303, answer.data
    assert answer.headers["Location"] == f"{PREFIX}/console/members"
