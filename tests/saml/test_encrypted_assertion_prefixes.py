"""Signed, then encrypted: the assertion is verified as the IdP signed it, whatever prefixes it uses.

pysaml2 and SATOSA sign the assertion, encrypt it, and write the Response with other namespace
prefixes than the Assertion (`ns0:Response`, `saml2:Assertion`). python3-saml decrypts the
assertion into the response's tree, where lxml rewrites its prefixes to the response's: the
signed bytes change and a valid signature failed (DESIGN.md section 5). The test IdP
(tests/saml/idp.py, signxml and xmlsec) encrypts with the prefixes below.
"""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from tests.saml.conftest import Sso, configure
from tests.saml.idp import SAML, SAMLP, KeyPair, set_name_id
from tests.saml.test_metadata_and_cli import _sp_cert
from tests.saml.test_refusals import assert_refused

PREFIXES = {
    "saml2 assertion in a samlp/saml response (SATOSA)": ({"samlp": SAMLP, "saml": SAML}, "saml2"),
    "saml assertion in an ns0/ns1 response": ({"ns0": SAMLP, "ns1": SAML}, "saml"),
    "saml2 assertion in an ns0/ns1 response (pysaml2)": ({"ns0": SAMLP, "ns1": SAML}, "saml2"),
    "default-namespace assertion in a samlp/saml2 response": ({"samlp": SAMLP, "saml2": SAML}, None),
}


@pytest.fixture
def encrypting(sso: Sso) -> Sso:
    configure(sso.db, sso.org.org.slug, sso.idp, want_assertions_encrypted=True)
    return sso


def _login(sso: Sso, response_nsmap: dict[str | None, str], assertion_prefix: str | None, **options: Any) -> Any:
    return sso.sp_login(encrypt_for=_sp_cert(sso), response_nsmap=response_nsmap, assertion_prefix=assertion_prefix,
                        **options)


@pytest.mark.parametrize("sign", ["assertion", "both"])
@pytest.mark.parametrize("prefixes", list(PREFIXES.values()), ids=list(PREFIXES))
def test_signed_then_encrypted_is_accepted_whatever_the_prefixes(encrypting: Sso, prefixes: tuple, sign: str) -> None:
    answer = _login(encrypting, *prefixes, sign=sign, name_id="enc@acme.test")
    assert answer.status_code == 303, answer.data[:300]
    assert encrypting.client.get("/me").json["userName"] == "enc@acme.test"


@pytest.mark.parametrize("prefixes", list(PREFIXES.values()), ids=list(PREFIXES))
def test_unsigned_forged_or_tampered_encrypted_assertions_stay_refused(encrypting: Sso, prefixes: tuple,
                                                                        other_keys: KeyPair) -> None:
    assert_refused(encrypting, _login(encrypting, *prefixes, sign="none"), "unsigned")
    assert_refused(encrypting, _login(encrypting, *prefixes, signer=other_keys), "invalid_signature")
    tampered = _login(encrypting, *prefixes, name_id="enc@acme.test",
                      after_signing=lambda assertion: set_name_id(assertion, "owner@acme.test"))
    assert_refused(encrypting, tampered, "invalid_signature")


def _comment_in_name_id(assertion: etree._Element) -> None:
    """The attacker owns "owner@acme.test.evil.example" at the IdP; a naive SP reads the NameID up
    to the comment. Exclusive C14N leaves comments out, so the signature still verifies."""
    name_id = next(assertion.iter(f"{{{SAML}}}NameID"))
    name_id.text = "owner@acme.test"
    comment = etree.Comment("")
    comment.tail = ".evil.example"
    name_id.append(comment)


def test_a_comment_inside_the_encrypted_assertion_is_refused(encrypting: Sso) -> None:
    answer = _login(encrypting, {"samlp": SAMLP, "saml": SAML}, "saml", name_id="owner@acme.test.evil.example",
                    after_signing=_comment_in_name_id)
    assert_refused(encrypting, answer, "xml_comment_or_pi")
