"""A slug is checked whole: Python's `$` matches before a final newline, so `re.match` with
`^...$` took "x\n" for a slug. The SAML URLs answer such a path as for an unknown org (the 404
page), never the metadata of an org by that name; an org cannot be made with it either."""

from __future__ import annotations

import pytest

from audit import Actor
from identity import orgs
from identity.db import Database
from identity.errors import InvalidValue
from tests.saml.conftest import Sso

NOT_SLUGS = ["x%0A", "acme%0A", "nobody%0A"]


@pytest.mark.parametrize("slug", NOT_SLUGS)
def test_the_saml_urls_of_a_slug_with_a_trailing_newline_answer_as_for_no_org(sso: Sso, slug: str) -> None:
    """Beside a configured org `acme`: its metadata, sign-in and ACS URLs, the slug followed by %0A."""
    answers = {"metadata": sso.client.get(f"/saml/{slug}/metadata"),
               "login": sso.client.get(f"/saml/{slug}/login"),
               "acs": sso.client.post(f"/saml/{slug}/acs", data={"SAMLResponse": "PHg+PC94Pg=="})}
    for url, answer in answers.items():
        assert answer.status_code == 404, (url, answer.status_code)
        assert "Single sign-on is not available" in answer.get_data(as_text=True), url
    assert sso.client.get("/saml/acme/metadata").status_code == 200  # the org's own URL still answers


def test_an_org_cannot_be_made_with_a_slug_ending_in_a_newline(db: Database, system: Actor) -> None:
    with db.transaction() as session, pytest.raises(InvalidValue):
        orgs.create_org(session, system, "Nl", owner_email="owner@nl.test", slug="nl\n")
