"""The SP's metadata says what the SP enforces: `WantAssertionsSigned` is the org's
`want_assertions_signed` setting, and the ACS holds the IdP to it.

Off (the default): a response signed as a whole is accepted, and the metadata says
`WantAssertionsSigned="false"` (it used to say "true" and accept it anyway). On: an assertion
that is not signed itself is refused, even inside a signed response, and the metadata says "true".
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from lxml import etree
from sqlalchemy import select

from audit.models import AuditEvent
from identity.db import Database
from identity.orgs import NewOrg
from saml.cli import saml as saml_cli
from tests.saml.conftest import Sso, configure
from tests.saml.test_admin_api import _put, keys_of  # noqa: F401  # keys_of is a fixture
from tests.saml.test_refusals import assert_refused

MD = "urn:oasis:names:tc:SAML:2.0:metadata"


def _wants_assertions_signed(client: FlaskClient) -> str | None:
    descriptor = etree.fromstring(client.get("/saml/acme/metadata").data).find(f"{{{MD}}}SPSSODescriptor")
    wanted: str | None = descriptor.get("WantAssertionsSigned")
    return wanted


def test_by_default_the_metadata_says_false_and_a_response_signed_whole_is_accepted(sso: Sso) -> None:
    assert _wants_assertions_signed(sso.client) == "false"
    answer = sso.sp_login(sign="response", name_id="whole@acme.test")
    assert answer.status_code == 303, answer.data[:300]
    assert sso.client.get("/me").json["userName"] == "whole@acme.test"


@pytest.mark.parametrize("sign", ["assertion", "both"])
def test_when_wanted_the_metadata_says_true_and_signed_assertions_pass(sso: Sso, sign: str) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_signed=True)
    assert _wants_assertions_signed(sso.client) == "true"
    answer = sso.sp_login(sign=sign, name_id="signed@acme.test")
    assert answer.status_code == 303, answer.data[:300]


def test_when_wanted_an_assertion_signed_only_through_its_response_is_refused(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_signed=True)
    assert_refused(sso, sso.sp_login(sign="response", name_id="whole@acme.test"), "unsigned")


def test_the_setting_through_the_cli_and_the_admin_api(sso: Sso, runner: CliRunner, tmp_path: Any,
                                                       client: FlaskClient, keys_of: dict[str, str],  # noqa: F811
                                                       acme: NewOrg, db: Database) -> None:
    path = tmp_path / "idp.xml"
    path.write_bytes(sso.idp.metadata())
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata", str(path),
                                      "--signed-assertions", "--json"])
    assert result.exit_code == 0, result.output
    assert _wants_assertions_signed(client) == "true"
    answer = _put(client, keys_of["owner"], {"idp_metadata_xml": sso.idp.metadata().decode(),
                                             "want_assertions_signed": False})
    assert answer.status_code == 200 and answer.json["idp"]["want_assertions_signed"] is False
    assert _wants_assertions_signed(client) == "false"
    with db.reading() as session:
        last = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.updated")
                               .order_by(AuditEvent.seq.desc())).first()
    assert last is not None and last.changes["want_assertions_signed"] == {"before": True, "after": False}
