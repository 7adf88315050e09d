"""An encrypted assertion decrypted so that its signature still verifies (DESIGN.md section 5).

python3-saml 1.16 decrypts an `EncryptedAssertion` inside the response's tree and then moves the
assertion into the `Response` (`Response._decrypt_assertion`). lxml's move drops the assertion's
own namespace declarations wherever an ancestor declares the same namespace under another
prefix, and rewrites its elements to that prefix: `saml2:Assertion` becomes `ns1:Assertion`. The
prefixes are part of the canonical form a signature covers, so an assertion that pysaml2 or
SATOSA signed and then encrypted, with other prefixes than the response's, failed its signature.

`Response` keeps python3-saml and all its checks; only that step differs. The assertion is
decrypted by python3-saml's own code in a shell that declares no SAML assertion prefix, so that
nothing is rewritten; its text is checked as the raw message is (no DTD, comment or processing
instruction: inside the encryption, `saml.protocol.inspect_message` never saw it); and the
decrypted document is the response's text with the assertion's text in place of the
`EncryptedAssertion`, parsed again. Every byte the IdP signed is where it was, so the toolkit
verifies the signature on what the IdP signed; a forged, unsigned or altered assertion fails
exactly as before.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from copy import deepcopy
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

_ENCRYPTED = "/samlp:Response/saml:EncryptedAssertion"


class Response(OneLogin_Saml2_Response):  # type: ignore[misc]  # python3-saml is untyped
    """python3-saml's Response, whose decrypted assertion is byte for byte what the IdP encrypted."""

    def __init__(self, settings: Any, encoded: str, inspect: Callable[[bytes], object]) -> None:
        """`inspect` checks the decrypted assertion's text as the raw message is checked (saml.protocol)."""
        self._inspect = inspect
        super().__init__(settings, encoded)

    def _decrypt_assertion(self, xml: etree._Element) -> etree._Element:
        found = OneLogin_Saml2_XML.query(xml, _ENCRYPTED)
        if not found:
            return super()._decrypt_assertion(xml)
        assertion = self._decrypted_alone(found[0])
        self._inspect(assertion)
        marker = f"decrypted-{secrets.token_hex(16)}"
        found[0].getparent().replace(found[0], etree.Comment(marker))
        spliced = etree.tostring(xml).replace(f"<!--{marker}-->".encode(), assertion, 1)
        return OneLogin_Saml2_XML.to_etree(spliced)

    def _decrypted_alone(self, encrypted: etree._Element) -> bytes:
        """Decrypt with python3-saml's own code, in a Response shell that declares only the protocol
        namespace, so that the assertion keeps its own declarations; return the assertion's text."""
        shell = etree.Element(f"{{{C.NS_SAMLP}}}Response", nsmap={"samlp": C.NS_SAMLP})
        shell.append(deepcopy(encrypted))
        decrypted = super()._decrypt_assertion(shell)
        assertions = [child for child in decrypted if isinstance(child.tag, str)]
        if len(assertions) != 1 or assertions[0].tag != f"{{{C.NS_SAML}}}Assertion":
            raise ValueError("the EncryptedAssertion holds no single Assertion")
        text: bytes = etree.tostring(assertions[0])
        return text
