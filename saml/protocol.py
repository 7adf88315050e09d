"""Checking a SAML Response: python3-saml in strict mode, plus the checks it leaves to us.

python3-saml verifies the XML signature, the one-assertion rule (which defeats signature wrapping),
the schema, the issuer, and the Conditions time window. FINDINGS.md lists what it does not do;
this module adds those (SAML profiles 2.0 section 4.1.4):

- no DOCTYPE, comment or processing instruction anywhere in the message (a comment inside a
  NameID is the classic truncation attack; the toolkit's parser drops comments silently);
- Destination present and exactly our ACS URL (the toolkit accepts a prefix);
- at least one AudienceRestriction, each naming us (the toolkit accepts none);
- every bearer SubjectConfirmationData names exactly our ACS URL as Recipient, carries
  NotOnOrAfter, and carries the response's InResponseTo (the toolkit accepts any one that fits);
- an assertion lifetime short enough for the replay cache to cover it;
- the IssueInstant of the Response and of the Assertion neither later than now (beyond the
  clock skew) nor older than `Expected.max_issue_age` plus the skew (SAML core 2.0 sections
  2.3.3 and 3.2.2 define them; the toolkit checks only the Conditions window, which an IdP may
  set hours long).

InResponseTo against our own pending requests and the replay cache are the caller's part,
because they need the database (saml.service); so is the browser that delivers the response,
which must be the one that started the sign-in (saml.binding).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as VE
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from audit import clock
from saml.encrypted_assertion import Response

CLOCK_SKEW = dt.timedelta(seconds=C.ALLOWED_CLOCK_DRIFT)  # python3-saml's own bound: 300 s
MAX_ASSERTION_LIFETIME = dt.timedelta(hours=24)
MAX_ISSUE_AGE = dt.timedelta(minutes=5)  # an IdP posts its response at once; a browser delivers it in seconds
NS = {"samlp": C.NS_SAMLP, "saml": C.NS_SAML}

# python3-saml's error codes -> the reason we audit and show. Never the message: it quotes content.
REASONS: dict[int, str] = {
    VE.WRONG_NUMBER_OF_ASSERTIONS: "wrong_number_of_assertions",
    VE.STATUS_CODE_IS_NOT_SUCCESS: "idp_status_not_success",
    VE.INVALID_XML_FORMAT: "schema_invalid",
    VE.WRONG_INRESPONSETO: "in_response_to_mismatch",
    VE.NO_ENCRYPTED_ASSERTION: "assertion_not_encrypted",
    VE.MISSING_CONDITIONS: "missing_conditions",
    VE.ASSERTION_TOO_EARLY: "not_yet_valid",
    VE.ASSERTION_EXPIRED: "expired",
    VE.SESSION_EXPIRED: "expired",
    VE.RESPONSE_EXPIRED: "expired",
    VE.WRONG_DESTINATION: "wrong_destination",
    VE.EMPTY_DESTINATION: "wrong_destination",
    VE.WRONG_AUDIENCE: "wrong_audience",
    VE.WRONG_ISSUER: "wrong_issuer",
    VE.ISSUER_MULTIPLE_IN_RESPONSE: "wrong_issuer",
    VE.ISSUER_NOT_FOUND_IN_ASSERTION: "wrong_issuer",
    VE.WRONG_SUBJECTCONFIRMATION: "wrong_subject_confirmation",
    VE.NO_SIGNATURE_FOUND: "unsigned",
    VE.NO_SIGNED_ASSERTION: "unsigned",
    VE.NO_SIGNED_MESSAGE: "unsigned",
    VE.INVALID_SIGNATURE: "invalid_signature",
    VE.DEPRECATED_SIGNATURE_METHOD: "deprecated_algorithm",
    VE.DEPRECATED_DIGEST_METHOD: "deprecated_algorithm",
    VE.NO_NAMEID: "no_name_id",
    VE.EMPTY_NAMEID: "no_name_id",
}
for _code in (VE.WRONG_SIGNED_ELEMENT, VE.ID_NOT_FOUND_IN_SIGNED_ELEMENT, VE.DUPLICATED_ID_IN_SIGNED_ELEMENTS,
              VE.INVALID_SIGNED_ELEMENT, VE.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS, VE.UNEXPECTED_SIGNED_ELEMENTS,
              VE.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE, VE.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION,
              VE.WRONG_NUMBER_OF_SIGNATURES):
    REASONS[_code] = "signature_structure"


class Refused(Exception):
    """A SAML message we do not accept. `reason` is a short code, safe to audit and to show."""

    def __init__(self, reason: str, status: int = 400, *, user_id: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.user_id = user_id


@dataclass(frozen=True)
class Expected:
    """What a response for this org must say about us."""

    acs_url: str
    entity_id: str
    in_response_to: str | None  # the pending request it answers; None for IdP-initiated
    max_issue_age: dt.timedelta = MAX_ISSUE_AGE  # how old an IssueInstant may be, clock skew not included


@dataclass(frozen=True)
class Assertion:
    """The facts of a verified assertion that sign-in needs. No raw XML."""

    assertion_id: str
    issuer: str
    name_id: str
    name_id_format: str | None
    session_index: str | None
    in_response_to: str | None
    expires_at: dt.datetime
    attributes: dict[str, list[str]] = field(default_factory=dict)


class _CompiledSchemas(threading.local):
    """python3-saml compiles its XSD (2 ms, a fifth of a sign-in) for every message it validates.

    It builds the validator through the class attribute `_schema_class(parsed_schema_file)`;
    this stands in for it and hands back the validator compiled the first time for that file.
    The schema files and the validation are python3-saml's own and unchanged. Per thread,
    because lxml validators keep their error log on the instance.
    """

    def __init__(self) -> None:
        self.compiled: dict[str, etree.XMLSchema] = {}

    def __call__(self, schema_doc: etree._ElementTree) -> etree.XMLSchema:
        url = schema_doc.docinfo.URL
        if not url:
            return etree.XMLSchema(schema_doc)
        if url not in self.compiled:
            self.compiled[url] = etree.XMLSchema(schema_doc)
        return self.compiled[url]


OneLogin_Saml2_XML._schema_class = _CompiledSchemas()

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                          remove_comments=False, remove_pis=False, remove_blank_text=False)


def decode_message(encoded: str) -> bytes:
    """Return the XML of a base64 SAMLResponse/SAMLRequest form field, or refuse it."""
    try:
        return base64.b64decode("".join((encoded or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("malformed") from None


def inspect_message(xml: bytes) -> etree._Element:
    """Parse `xml` without DTDs, entities or network; refuse DOCTYPE, comments and PIs."""
    try:
        root = etree.fromstring(xml, _PARSER)
    except etree.XMLSyntaxError:
        raise Refused("malformed") from None
    if root.getroottree().docinfo.doctype or root.getroottree().docinfo.internalDTD is not None:
        raise Refused("dtd_forbidden")
    for _node in root.iter(etree.Comment, etree.ProcessingInstruction):
        raise Refused("xml_comment_or_pi")
    return root


def response_in_response_to(encoded: str) -> str | None:
    """Return the Response's InResponseTo (not yet verified), refusing what is not a Response."""
    root = inspect_message(decode_message(encoded))
    if root.tag != f"{{{C.NS_SAMLP}}}Response":
        raise Refused("not_a_response")
    in_response_to: str | None = root.get("InResponseTo")  # lxml is untyped: an attribute is str or None
    return in_response_to


def verify_response(settings: OneLogin_Saml2_Settings, request_data: dict[str, Any], encoded: str,
                    expected: Expected) -> Assertion:
    """Verify a base64 SAMLResponse for one org and return its assertion's facts, or refuse it."""
    inspect_message(decode_message(encoded))
    try:
        response = Response(settings, encoded, inspect_message)  # python3-saml's, decrypting as the IdP signed
        response.is_valid(request_data, request_id=expected.in_response_to, raise_exceptions=True)
        return _facts(response, expected)
    except VE as error:  # the toolkit's getters raise too (an empty NameID, a repeated attribute)
        raise Refused(REASONS.get(error.code, "invalid_response")) from None
    except Refused:
        raise
    except Exception:  # DTDForbidden, decryption and parser errors: the toolkit raises many kinds
        raise Refused("malformed") from None


def _facts(response: OneLogin_Saml2_Response, expected: Expected) -> Assertion:
    """Apply the checks python3-saml leaves out to a response it accepted; return what sign-in needs."""
    document = response.get_xml_document()
    assertion = _one_assertion(document)
    check_issued(document, "response", expected.max_issue_age)
    check_issued(assertion, "assertion", expected.max_issue_age)
    if document.get("Destination") != expected.acs_url:
        raise Refused("wrong_destination")
    if document.get("InResponseTo") != expected.in_response_to:
        raise Refused("in_response_to_mismatch")
    _check_audiences(assertion, expected.entity_id)
    scd_expiry = _check_subject_confirmations(assertion, expected)
    return Assertion(
        assertion_id=assertion.get("ID") or "",
        issuer=(assertion.findtext("saml:Issuer", namespaces=NS) or "").strip(),
        name_id=response.get_nameid() or "",
        name_id_format=response.get_nameid_format(),
        session_index=response.get_session_index(),
        in_response_to=expected.in_response_to,
        expires_at=_expiry(assertion, scd_expiry),
        attributes=response.get_attributes(),
    )


def _one_assertion(document: etree._Element) -> etree._Element:
    found = document.findall("saml:Assertion", NS)
    if len(found) != 1 or len(document.findall(".//saml:Assertion", NS)) != 1:
        raise Refused("wrong_number_of_assertions")
    return found[0]


def check_issued(element: etree._Element, name: str, max_age: dt.timedelta) -> None:
    """Refuse `element` (Response, Assertion, logout message) issued in the future or more than `max_age` ago."""
    issued, now = _time(element.get("IssueInstant")), clock.now()
    if issued > now + CLOCK_SKEW:
        raise Refused(f"{name}_issued_in_future")
    if issued < now - max_age - CLOCK_SKEW:
        raise Refused(f"{name}_too_old")


def _check_audiences(assertion: etree._Element, entity_id: str) -> None:
    restrictions = assertion.findall("saml:Conditions/saml:AudienceRestriction", NS)
    if not restrictions:
        raise Refused("wrong_audience")
    for restriction in restrictions:
        audiences = [(a.text or "").strip() for a in restriction.findall("saml:Audience", NS)]
        if entity_id not in audiences:
            raise Refused("wrong_audience")


def _check_subject_confirmations(assertion: etree._Element, expected: Expected) -> dt.datetime:
    """Require bearer confirmations naming exactly us and the request; return their latest expiry."""
    bearer = [sc for sc in assertion.findall("saml:Subject/saml:SubjectConfirmation", NS)
              if sc.get("Method") == C.CM_BEARER]
    if not bearer:
        raise Refused("wrong_subject_confirmation")
    expiries = []
    for confirmation in bearer:
        data = confirmation.find("saml:SubjectConfirmationData", NS)
        if data is None or data.get("Recipient") != expected.acs_url:
            raise Refused("wrong_recipient")
        if data.get("InResponseTo") != expected.in_response_to:
            raise Refused("in_response_to_mismatch")
        if not data.get("NotOnOrAfter"):
            raise Refused("wrong_subject_confirmation")
        expiries.append(_time(data.get("NotOnOrAfter")))
    return max(expiries)


def logout_expiry(root: etree._Element, max_age: dt.timedelta = MAX_ISSUE_AGE) -> tuple[str, dt.datetime]:
    """Return a verified logout message's ID and when it can no longer be accepted (its NotOnOrAfter,
    else its IssueInstant plus `max_age`, with the clock skew): how long the ID must be remembered
    so that a captured message is not replayed (python3-saml checks NotOnOrAfter, which is
    optional, and not the IssueInstant: saml.logout checks that with `check_issued`)."""
    ends = _time(root.get("NotOnOrAfter")) if root.get("NotOnOrAfter") else _time(root.get("IssueInstant")) + max_age
    if not root.get("ID"):
        raise Refused("malformed")
    return str(root.get("ID")), min(ends, clock.now() + max_age) + CLOCK_SKEW


def _time(value: str | None) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(value), dt.UTC)
    except (ValueError, TypeError):
        raise Refused("malformed") from None


def _expiry(assertion: etree._Element, scd_expiry: dt.datetime) -> dt.datetime:
    """Return when the assertion can no longer be accepted: how long its id must be remembered."""
    conditions = assertion.find("saml:Conditions", NS)
    ends = [scd_expiry]
    if conditions is not None and conditions.get("NotOnOrAfter"):
        ends.append(_time(conditions.get("NotOnOrAfter")))
    expires = max(ends) + CLOCK_SKEW
    if expires > clock.now() + MAX_ASSERTION_LIFETIME:
        raise Refused("assertion_lifetime_too_long")
    return expires
