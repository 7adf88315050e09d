"""SP metadata, encrypted assertions, and `identity saml configure` through click."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from audit import Actor
from identity import org_lifecycle
from identity.db import Database
from identity.orgs import NewOrg
from saml.cli import saml as saml_cli
from saml.models import SamlConnection
from tests.factories import actions
from tests.saml.conftest import BASE_URL, Sso, configure
from tests.saml.idp import TestIdP

MD = "urn:oasis:names:tc:SAML:2.0:metadata"
DS = "http://www.w3.org/2000/09/xmldsig#"
NS = {"md": MD, "ds": DS}


def _sp_cert(sso: Sso) -> x509.Certificate:
    root = etree.fromstring(sso.client.get("/saml/acme/metadata").data)
    body = root.findtext(".//md:KeyDescriptor[@use='encryption']//ds:X509Certificate", namespaces=NS)
    pem = f"-----BEGIN CERTIFICATE-----\n{''.join(body.split())}\n-----END CERTIFICATE-----\n"
    return x509.load_pem_x509_certificate(pem.encode())


def test_metadata_is_schema_valid_with_signing_and_encryption_keys(sso: Sso) -> None:
    answer = sso.client.get("/saml/acme/metadata")
    assert answer.status_code == 200 and answer.mimetype == "application/samlmetadata+xml"
    root = OneLogin_Saml2_XML.validate_xml(answer.data, "saml-schema-metadata-2.0.xsd")
    assert not isinstance(root, str), root
    root = etree.fromstring(answer.data)
    assert root.get("entityID") == f"{BASE_URL}/saml/acme/metadata"
    acs = root.find(".//md:AssertionConsumerService", NS)
    assert (acs.get("Location"), acs.get("Binding")) == (f"{BASE_URL}/saml/acme/acs",
                                                          "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST")
    slo = root.find(".//md:SingleLogoutService", NS)
    assert slo.get("Location") == f"{BASE_URL}/saml/acme/slo"
    uses = sorted(kd.get("use") for kd in root.findall(".//md:KeyDescriptor", NS))
    assert uses == ["encryption", "signing"]
    assert b"PRIVATE" not in answer.data


def test_encrypted_assertion_is_accepted_when_configured(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_encrypted=True)
    answer = sso.sp_login(name_id="enc@acme.test", encrypt_for=_sp_cert(sso))
    assert answer.status_code == 303, answer.data
    assert sso.client.get("/me").json["userName"] == "enc@acme.test"


def test_plain_assertion_is_refused_when_encryption_is_required(sso: Sso) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_encrypted=True)
    answer = sso.sp_login(name_id="plain@acme.test")
    assert answer.status_code == 400
    assert sso.client.get("/me").status_code == 401


def test_assertion_encrypted_for_another_key_is_refused(sso: Sso, other_keys) -> None:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_encrypted=True)
    answer = sso.sp_login(name_id="enc@acme.test", encrypt_for=other_keys.cert)
    assert answer.status_code == 400
    assert sso.client.get("/me").status_code == 401


def test_cli_configure_from_metadata_file(runner: CliRunner, acme: NewOrg, idp: TestIdP, tmp_path: Path) -> None:
    path = tmp_path / "idp.xml"
    path.write_bytes(idp.metadata())
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata", str(path), "--no-jit",
                                      "--allow-idp-initiated", "--attribute", "email=mail", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["idp_entity_id"] == idp.entity_id
    assert (out["jit"], out["allow_idp_initiated"]) == (False, True)
    assert out["acs_url"].endswith("/saml/acme/acs")


def test_cli_configure_refuses_bad_metadata(runner: CliRunner, acme: NewOrg, tmp_path: Path) -> None:
    path = tmp_path / "idp.xml"
    path.write_bytes(b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>')
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata", str(path)])
    assert result.exit_code == 1 and "unreadable IdP metadata" in result.output
    result = runner.invoke(saml_cli, ["configure", "--org", "nope", "--idp-metadata", str(path)])
    assert result.exit_code == 1


def test_cli_configure_refuses_a_deleted_org(runner: CliRunner, db: Database, system: Actor, acme: NewOrg,
                                             idp: TestIdP, tmp_path: Path) -> None:
    """Deleting an org removes its SSO (identity.org_lifecycle.delete_org); configuring it again would
    let its IdP sign people in (JIT) to an org that is gone. The domain refuses a deleted org
    (identity.seats.lock_org), so the operator's command fails and no connection is made."""
    with db.transaction() as session:
        org_lifecycle.delete_org(session, system, acme.org.id, confirm="acme")
    path = tmp_path / "idp.xml"
    path.write_bytes(idp.metadata())
    result = runner.invoke(saml_cli, ["configure", "--org", "acme", "--idp-metadata", str(path)])
    assert result.exit_code == 1 and f"no org {acme.org.id!r}" in result.output, result.output
    with db.reading() as session:
        assert session.get(SamlConnection, acme.org.id) is None
        assert "sso.configured" not in actions(db, acme.org.id)


def test_configure_is_audited_without_our_private_key(sso: Sso) -> None:
    assert "sso.configured" in actions(sso.db, sso.org.org.id)
    from sqlalchemy import select

    from audit.models import AuditEvent

    with sso.db.reading() as session:
        changes = [e.changes for e in session.scalars(select(AuditEvent).where(AuditEvent.action.like("sso.%")))]
    assert "PRIVATE KEY" not in json.dumps(changes)


def test_idp_certificate_swap_is_audited_by_fingerprint(sso: Sso, other_keys) -> None:
    import hashlib

    from sqlalchemy import select

    from audit.models import AuditEvent

    configure(sso.db, sso.org.org.slug, TestIdP(sso.idp.entity_id, other_keys))
    with sso.db.reading() as session:
        event = session.scalars(select(AuditEvent).where(AuditEvent.action == "sso.updated")).one()
    fingerprint = hashlib.sha256(other_keys.cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert event.changes["idp_signing_cert_sha256"]["after"] == [fingerprint]


def test_the_sp_metadata_url_the_service_advertises_before_sso_is_configured_answers(
        client, db: Database, system: Actor, acme: NewOrg) -> None:
    """DESIGN.md 5: a per-org SP with "metadata at /saml/<org>/metadata". Before the org has an IdP,
    `GET /api/v1/orgs/<org>/sso` gives `sp.metadata_url` (so do the console's "Give your IdP these values"
    and the Okta guide's step "Signature Certificate: ... this org's SP metadata", taken before the guide's
    last step configures SSO), but that URL answers 404 until SSO is configured: an IdP admin who imports
    the SP from its metadata URL (ADFS, Shibboleth, Okta's SLO certificate) first cannot."""
    from identity import keys

    with db.transaction() as session:
        owner = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                    team_id=acme.default_team_id, name="k", scopes=["admin"]).secret
    sso = client.get("/api/v1/orgs/acme/sso", headers={"Authorization": f"Bearer {owner}"})
    assert sso.status_code == 200 and sso.json["configured"] is False
    advertised = sso.json["sp"]["metadata_url"]
    assert advertised == f"{BASE_URL}/saml/acme/metadata"
    answer = client.get(advertised.removeprefix(BASE_URL))
    assert answer.status_code == 200, answer.status_code
    assert answer.mimetype == "application/samlmetadata+xml"


def test_the_sp_metadata_before_sso_is_configured_has_our_endpoints_and_no_key_yet(client, db: Database,
                                                                                   acme: NewOrg) -> None:
    """Before SSO is configured the SP has no key pair (configure_connection makes it): the metadata
    names our endpoints and the defaults, no KeyDescriptor. A slug no org has gets the same page
    (the anonymous URL tells no stranger which orgs exist); only what no slug can be is a 404."""
    answer = client.get("/saml/acme/metadata")
    assert answer.status_code == 200
    xml = answer.get_data(as_text=True)
    assert f'entityID="{BASE_URL}/saml/acme/metadata"' in xml and f"{BASE_URL}/saml/acme/acs" in xml
    assert "KeyDescriptor" not in xml and 'AuthnRequestsSigned="false"' in xml
    nobody = client.get("/saml/nobody/metadata")
    assert (nobody.status_code, nobody.mimetype) == (200, answer.mimetype)
    assert _without_validity(nobody.get_data(as_text=True)) == _without_validity(xml).replace("/acme/", "/nobody/")
    assert client.get("/saml/Not%20A%20Slug/metadata").status_code == 404


def _without_validity(xml: str) -> str:
    """The metadata without its validUntil (python3-saml stamps it from the clock)."""
    return re.sub(r'validUntil="[^"]*"', "", xml)
