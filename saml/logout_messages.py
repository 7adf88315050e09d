"""Checking the IdP's single logout messages, over either binding, plus the checks python3-saml leaves to us.

python3-saml reads single logout only over HTTP-Redirect (the signature in the query, SAML
bindings 2.0 section 3.4.4.1). Okta posts its LogoutResponse (and may post its LogoutRequest)
with HTTP-POST, where the signature is inside the XML (bindings section 3.5.4): `verify_posted`
checks that signature as the ACS checks a Response's, then lets python3-saml check the rest.

`checked` then applies, to a message of either binding, what the toolkit leaves out (SAML
profiles 2.0 section 4.4.4): Issuer present and the IdP's, Destination exactly our single logout
URL (the toolkit accepts a prefix), an IssueInstant neither in the future nor stale, and, for a
LogoutResponse, an InResponseTo and a success status. A signed message must carry its Destination
(bindings sections 3.4.5.2 and 3.5.5.2): over HTTP-POST one without it is refused; over
HTTP-Redirect it is let through, as before this module, since not every IdP sends one there (a
LogoutResponse's InResponseTo, which must name a request this org sent, ties it to us anyway).
Whether that InResponseTo is a request we sent and whether the message was seen before need the
database: the caller's part (saml.once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from saml.protocol import MAX_ISSUE_AGE, NS, Refused, check_issued, decode_message, inspect_message, logout_expiry

REQUEST, RESPONSE = "SAMLRequest", "SAMLResponse"
_TAGS = {REQUEST: f"{{{C.NS_SAMLP}}}LogoutRequest", RESPONSE: f"{{{C.NS_SAMLP}}}LogoutResponse"}
_DS = {"ds": C.NS_DS}
# What an enveloped signature over the whole message may use: SHA-1 refused as for the ACS.
_SIGNATURE_METHODS = frozenset({C.RSA_SHA256, C.RSA_SHA384, C.RSA_SHA512})
_DIGEST_METHODS = frozenset({C.SHA256, C.SHA384, C.SHA512})
# The enveloped-signature transform and canonicalization (exclusive, as SAML recommends, or inclusive).
_TRANSFORMS = frozenset({"http://www.w3.org/2000/09/xmldsig#enveloped-signature",
                         "http://www.w3.org/2001/10/xml-exc-c14n#", "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"})


@dataclass(frozen=True)
class Expected:
    """What a logout message for this org must say about us and its IdP."""

    slo_url: str
    idp_entity_id: str
    destination_required: bool  # HTTP-POST: yes; HTTP-Redirect: a Destination, when present, is ours
    max_issue_age: dt.timedelta = MAX_ISSUE_AGE


@dataclass(frozen=True)
class LogoutMessage:
    """A verified logout message: which kind, its ID, what it answers, how long its ID is remembered."""

    kind: str  # REQUEST or RESPONSE
    xml: bytes
    message_id: str
    in_response_to: str | None
    expires_at: dt.datetime


def posted_kind(form: dict[str, str]) -> str:
    """Return which message a POST carries (REQUEST or RESPONSE); refuse none, or both."""
    kinds = [kind for kind in (REQUEST, RESPONSE) if form.get(kind)]
    if len(kinds) != 1:
        raise Refused("not_a_logout_message")
    return kinds[0]


def verify_posted(settings: OneLogin_Saml2_Settings, request_data: dict[str, Any], form: dict[str, str],
                  expected: Expected) -> LogoutMessage:
    """Verify an HTTP-POST LogoutRequest or LogoutResponse (SAML bindings 2.0 section 3.5), or refuse it.

    `settings` must not ask for a query signature (wantMessagesSigned off): the signature checked
    here is the one inside the XML, over the whole message, by a certificate the IdP's metadata lists.
    """
    kind = posted_kind(form)
    xml = decode_message(form[kind])
    root = inspect_message(xml)
    if root.tag != _TAGS[kind]:
        raise Refused("not_a_logout_message")
    _check_signature(root, xml, settings.get_idp_data().get("x509certMulti", {}).get("signing") or [])
    try:
        if kind == RESPONSE:
            valid = OneLogin_Saml2_Logout_Response(settings, form[kind]).is_valid(request_data)
        else:
            valid = OneLogin_Saml2_Logout_Request(settings, form[kind]).is_valid(request_data)
    except Exception:  # the toolkit raises bare errors for what its parser refuses
        raise Refused("malformed") from None
    if not valid:
        raise Refused("invalid_logout_message")
    return checked(kind, xml, expected)


def _check_signature(root: etree._Element, xml: bytes, certs: list[str]) -> None:
    """Require one enveloped signature, a child of the message, over the message itself (its ID,
    held by no other element: no signature wrapping), with SHA-2, by one of `certs`."""
    signatures = list(root.iter(f"{{{C.NS_DS}}}Signature"))
    if not signatures:
        raise Refused("unsigned")
    message_id = root.get("ID") or ""
    if len(signatures) != 1 or signatures[0].getparent() is not root or not message_id:
        raise Refused("signature_structure")
    if sum(1 for element in root.iter() if element.get("ID") == message_id) != 1:
        raise Refused("signature_structure")
    signature = signatures[0]
    references = signature.findall("ds:SignedInfo/ds:Reference", _DS)
    if len(references) != 1 or references[0].get("URI") != f"#{message_id}":
        raise Refused("signature_structure")
    method = signature.find("ds:SignedInfo/ds:SignatureMethod", _DS)
    digests = [d.get("Algorithm") for d in references[0].findall("ds:DigestMethod", _DS)]
    transforms = [t.get("Algorithm") for t in references[0].findall("ds:Transforms/ds:Transform", _DS)]
    if method is None or method.get("Algorithm") not in _SIGNATURE_METHODS or len(digests) != 1 \
            or digests[0] not in _DIGEST_METHODS:
        raise Refused("deprecated_algorithm")
    if any(transform not in _TRANSFORMS for transform in transforms):
        raise Refused("signature_structure")
    xpath = f"/samlp:{etree.QName(root).localname}/ds:Signature"
    if not certs or not OneLogin_Saml2_Utils.validate_sign(xml, multicerts=certs, xpath=xpath,
                                                           raise_exceptions=False):
        raise Refused("invalid_signature")


def checked(kind: str, xml: bytes | str, expected: Expected) -> LogoutMessage:
    """Apply the checks python3-saml leaves out to a logout message whose signature verified."""
    raw = xml.encode() if isinstance(xml, str) else xml
    root = inspect_message(raw)
    if root.tag != _TAGS[kind]:
        raise Refused("not_a_logout_message")
    if (root.findtext("saml:Issuer", namespaces=NS) or "").strip() != expected.idp_entity_id:
        raise Refused("wrong_issuer")
    destination = root.get("Destination")
    if destination != expected.slo_url and (destination is not None or expected.destination_required):
        raise Refused("wrong_destination")
    check_issued(root, "logout_" + ("request" if kind == REQUEST else "response"), expected.max_issue_age)
    in_response_to = root.get("InResponseTo")
    if kind == RESPONSE:
        if not in_response_to:
            raise Refused("unknown_in_response_to")
        status = root.find("samlp:Status/samlp:StatusCode", NS)
        if status is None or status.get("Value") != C.STATUS_SUCCESS:
            raise Refused("logout_not_success")
    message_id, expires_at = logout_expiry(root, expected.max_issue_age)
    return LogoutMessage(kind, raw, message_id, in_response_to, expires_at)
