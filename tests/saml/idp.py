"""An identity provider for the tests, written with signxml and xmlsec (not python3-saml).

It signs real SAML 2.0 responses the way Okta and Entra ID do (exclusive C14N, RSA-SHA256,
enveloped signature right after the Issuer), and can be told to get any detail wrong, so that
each refusal is proved against a message that is otherwise valid.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
import zlib
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner
from signxml.algorithms import CanonicalizationMethod

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
DS = "http://www.w3.org/2000/09/xmldsig#"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XS = "http://www.w3.org/2001/XMLSchema"
MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NSMAP = {"samlp": SAMLP, "saml": SAML}
NS = {"samlp": SAMLP, "saml": SAML, "ds": DS}
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"
REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def saml_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KeyPair:
    """An RSA key and a self-signed certificate for it."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def make(cls, name: str, *, not_before: dt.datetime | None = None,
             not_after: dt.datetime | None = None) -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before or now - dt.timedelta(days=1))
                .not_valid_after(not_after or now + dt.timedelta(days=365)).sign(key, hashes.SHA256()))
        return cls(key, cert)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def cert_b64(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


class _Sha1Signer(XMLSigner):
    """signxml refuses SHA-1 by default; an old IdP still signs with it, and we must refuse that."""

    def check_deprecated_methods(self) -> None:
        return None


@dataclass
class Options:
    """What the next response says. Defaults make a valid response for `sp`."""

    name_id: str = "alice@acme.test"
    name_id_format: str | None = EMAIL_FORMAT
    attributes: dict[str, list[str]] = field(default_factory=dict)
    in_response_to: str | None = None
    scd_in_response_to: str | None = "same"  # "same": the response's; None: left out
    destination: str | None = "acs"  # "acs": the SP's ACS URL
    recipient: str | None = "acs"
    audience: str | None = "sp"  # None: no AudienceRestriction at all
    issuer: str | None = None  # None: the IdP's entity id
    not_before: dt.timedelta = dt.timedelta(minutes=-1)  # relative to now
    not_on_or_after: dt.timedelta = dt.timedelta(minutes=5)
    scd_not_on_or_after: dt.timedelta | None = dt.timedelta(minutes=5)
    response_issued: dt.timedelta = dt.timedelta(0)  # the Response's IssueInstant, relative to now
    assertion_issued: dt.timedelta = dt.timedelta(0)  # the Assertion's IssueInstant, relative to now
    sign: str = "assertion"  # assertion | response | both | none
    signer: KeyPair | None = None  # None: the IdP's own key
    algorithm: str = "rsa-sha256"
    digest: str = "sha256"
    session_index: str = field(default_factory=lambda: f"_s{uuid.uuid4().hex}")
    assertion_id: str = field(default_factory=lambda: f"_a{uuid.uuid4().hex}")
    encrypt_for: x509.Certificate | None = None
    # The prefixes of the Response and of the Assertion, which need not agree: pysaml2 and SATOSA
    # write `ns0:Response` and `saml2:Assertion`. None as the assertion's prefix: a default namespace.
    response_nsmap: dict[str | None, str] = field(default_factory=lambda: dict(NSMAP))
    assertion_prefix: str | None = "saml"
    after_signing: Callable[[etree._Element], None] | None = None  # a forger's change to the signed assertion


class TestIdP:
    """A SAML IdP: metadata, and signed responses for one SP."""

    __test__ = False  # not a pytest class

    def __init__(self, entity_id: str, keys: KeyPair, *, extra_certs: list[KeyPair] | None = None) -> None:
        self.entity_id = entity_id
        self.keys = keys
        self.extra_certs = extra_certs or []
        self.sso_url = "https://idp.example.test/sso"
        self.slo_url: str | None = "https://idp.example.test/slo"

    def metadata(self) -> bytes:
        """Return IdP metadata with its signing certificate(s) and HTTP-Redirect endpoints."""
        root = etree.Element(_q(MD, "EntityDescriptor"), nsmap={"md": MD, "ds": DS}, entityID=self.entity_id)
        idp = etree.SubElement(root, _q(MD, "IDPSSODescriptor"),
                               protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol",
                               WantAuthnRequestsSigned="false")
        for pair in [self.keys, *self.extra_certs]:
            kd = etree.SubElement(idp, _q(MD, "KeyDescriptor"), use="signing")
            data = etree.SubElement(etree.SubElement(kd, _q(DS, "KeyInfo")), _q(DS, "X509Data"))
            etree.SubElement(data, _q(DS, "X509Certificate")).text = pair.cert_b64
        if self.slo_url:
            etree.SubElement(idp, _q(MD, "SingleLogoutService"), Binding=REDIRECT, Location=self.slo_url)
        etree.SubElement(idp, _q(MD, "NameIDFormat")).text = EMAIL_FORMAT
        etree.SubElement(idp, _q(MD, "SingleSignOnService"), Binding=REDIRECT, Location=self.sso_url)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")

    # -- responses ---------------------------------------------------------------------------

    def response(self, sp_entity_id: str, acs_url: str, opts: Options | None = None) -> bytes:
        """Return the XML of a SAML Response built and signed as `opts` says."""
        o = opts or Options()
        now = dt.datetime.now(dt.UTC)
        response = self._response_root(o, acs_url, now)
        assertion = self._assertion(o, sp_entity_id, acs_url, now)
        if o.sign in ("assertion", "both"):
            assertion = self._signed(assertion, o)
        if o.after_signing is not None:
            o.after_signing(assertion)
        if o.encrypt_for is not None:
            encrypted = etree.SubElement(response, _q(SAML, "EncryptedAssertion"))
            encrypted.append(self._encrypt(assertion, o.encrypt_for))
        else:
            response.append(assertion)
        if o.sign in ("response", "both"):
            response = self._signed(response, o)
        return etree.tostring(response)

    def _response_root(self, o: Options, acs_url: str, now: dt.datetime) -> etree._Element:
        attrs = {"ID": f"_r{uuid.uuid4().hex}", "Version": "2.0", "IssueInstant": saml_time(now + o.response_issued)}
        if o.destination is not None:
            attrs["Destination"] = acs_url if o.destination == "acs" else o.destination
        if o.in_response_to is not None:
            attrs["InResponseTo"] = o.in_response_to
        root = etree.Element(_q(SAMLP, "Response"), nsmap=o.response_nsmap, **attrs)
        etree.SubElement(root, _q(SAML, "Issuer")).text = o.issuer or self.entity_id
        status = etree.SubElement(root, _q(SAMLP, "Status"))
        etree.SubElement(status, _q(SAMLP, "StatusCode"), Value="urn:oasis:names:tc:SAML:2.0:status:Success")
        return root

    def _assertion(self, o: Options, sp_entity_id: str, acs_url: str, now: dt.datetime) -> etree._Element:
        a = etree.Element(_q(SAML, "Assertion"), nsmap={o.assertion_prefix: SAML, "xs": XS, "xsi": XSI},
                          ID=o.assertion_id, Version="2.0", IssueInstant=saml_time(now + o.assertion_issued))
        etree.SubElement(a, _q(SAML, "Issuer")).text = o.issuer or self.entity_id
        subject = etree.SubElement(a, _q(SAML, "Subject"))
        name_id = etree.SubElement(subject, _q(SAML, "NameID"))
        if o.name_id_format:
            name_id.set("Format", o.name_id_format)
        name_id.text = o.name_id
        sc = etree.SubElement(subject, _q(SAML, "SubjectConfirmation"), Method=BEARER)
        scd = etree.SubElement(sc, _q(SAML, "SubjectConfirmationData"))
        if o.scd_not_on_or_after is not None:
            scd.set("NotOnOrAfter", saml_time(now + o.scd_not_on_or_after))
        if o.recipient is not None:
            scd.set("Recipient", acs_url if o.recipient == "acs" else o.recipient)
        irt = o.in_response_to if o.scd_in_response_to == "same" else o.scd_in_response_to
        if irt is not None:
            scd.set("InResponseTo", irt)
        conditions = etree.SubElement(a, _q(SAML, "Conditions"), NotBefore=saml_time(now + o.not_before),
                                      NotOnOrAfter=saml_time(now + o.not_on_or_after))
        if o.audience is not None:
            restriction = etree.SubElement(conditions, _q(SAML, "AudienceRestriction"))
            etree.SubElement(restriction, _q(SAML, "Audience")).text = sp_entity_id if o.audience == "sp" else o.audience
        authn = etree.SubElement(a, _q(SAML, "AuthnStatement"), AuthnInstant=saml_time(now),
                                 SessionIndex=o.session_index)
        context = etree.SubElement(authn, _q(SAML, "AuthnContext"))
        etree.SubElement(context, _q(SAML, "AuthnContextClassRef")).text = \
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        if o.attributes:
            statement = etree.SubElement(a, _q(SAML, "AttributeStatement"))
            for name, values in o.attributes.items():
                attribute = etree.SubElement(statement, _q(SAML, "Attribute"), Name=name,
                                             NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified")
                for value in values:
                    v = etree.SubElement(attribute, _q(SAML, "AttributeValue"))
                    v.set(_q(XSI, "type"), "xs:string")
                    v.text = value
        return a

    def _signed(self, element: etree._Element, o: Options) -> etree._Element:
        """Sign `element` (enveloped, exclusive C14N) with the signature right after its Issuer."""
        issuer = element.find(_q(SAML, "Issuer"))
        placeholder = etree.Element(_q(DS, "Signature"), nsmap={"ds": DS}, Id="placeholder")
        issuer.addnext(placeholder)
        cls = _Sha1Signer if "sha1" in (o.algorithm + o.digest) else XMLSigner
        signer = cls(signature_algorithm=o.algorithm, digest_algorithm=o.digest,
                     c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        signer.namespaces = {"ds": DS}
        pair = o.signer or self.keys
        signed = signer.sign(element, key=pair.key, cert=[pair.cert], reference_uri=f"#{element.get('ID')}",
                             id_attribute="ID")
        return etree.fromstring(etree.tostring(signed))

    @staticmethod
    def _encrypt(assertion: etree._Element, cert: x509.Certificate) -> etree._Element:
        """Encrypt the assertion for the SP (AES-256-CBC, key wrapped with RSA-OAEP), with xmlsec."""
        doc = etree.fromstring(etree.tostring(assertion))
        template = xmlsec.template.encrypted_data_create(doc, xmlsec.constants.TransformAes256Cbc,
                                                         type=xmlsec.constants.TypeEncElement, ns="xenc")
        xmlsec.template.encrypted_data_ensure_cipher_value(template)
        key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="dsig")
        enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
        xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
        manager = xmlsec.KeysManager()
        manager.add_key(xmlsec.Key.from_memory(cert.public_bytes(serialization.Encoding.PEM),
                                               xmlsec.constants.KeyDataFormatCertPem))
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 256, xmlsec.constants.KeyDataTypeSession)
        return ctx.encrypt_xml(template, doc)

    def logout_request_query(self, sp_slo_url: str, name_id: str, session_index: str | None, *,
                             signer: KeyPair | None = None, sign: bool = True) -> str:
        """Return the query string of an HTTP-Redirect LogoutRequest (SAML bindings 3.4.4.1)."""
        now = dt.datetime.now(dt.UTC)
        root = etree.Element(_q(SAMLP, "LogoutRequest"), nsmap=NSMAP, ID=f"_l{uuid.uuid4().hex}", Version="2.0",
                             IssueInstant=saml_time(now), Destination=sp_slo_url,
                             NotOnOrAfter=saml_time(now + dt.timedelta(minutes=5)))
        etree.SubElement(root, _q(SAML, "Issuer")).text = self.entity_id
        etree.SubElement(root, _q(SAML, "NameID"), Format=EMAIL_FORMAT).text = name_id
        if session_index:
            etree.SubElement(root, _q(SAMLP, "SessionIndex")).text = session_index
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        encoded = base64.b64encode(deflater.compress(etree.tostring(root)) + deflater.flush()).decode()
        query = f"SAMLRequest={quote_plus(encoded)}&SigAlg={quote_plus(RSA_SHA256)}"
        if not sign:
            return query
        signature = (signer or self.keys).key.sign(query.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{query}&Signature={quote_plus(base64.b64encode(signature).decode())}"

    def logout_xml(self, kind: str, sp_slo_url: str | None, *, in_response_to: str | None = None,
                   name_id: str | None = None, session_index: str | None = None, status: str = SUCCESS,
                   options: Options | None = None, sign: bool = True) -> bytes:
        """Return an HTTP-POST LogoutRequest or LogoutResponse (SAML bindings 3.5): `kind` "request" or
        "response", signed inside the XML (enveloped, exclusive C14N) as `options` say."""
        now = dt.datetime.now(dt.UTC)
        attributes = {"ID": f"_{kind[0]}{uuid.uuid4().hex}", "Version": "2.0", "IssueInstant": saml_time(now)}
        if sp_slo_url is not None:
            attributes["Destination"] = sp_slo_url
        if in_response_to is not None:
            attributes["InResponseTo"] = in_response_to
        tag = "LogoutRequest" if kind == "request" else "LogoutResponse"
        root = etree.Element(_q(SAMLP, tag), nsmap=NSMAP, **attributes)
        etree.SubElement(root, _q(SAML, "Issuer")).text = self.entity_id
        if kind == "request":
            etree.SubElement(root, _q(SAML, "NameID"), Format=EMAIL_FORMAT).text = name_id
            if session_index:
                etree.SubElement(root, _q(SAMLP, "SessionIndex")).text = session_index
        else:
            etree.SubElement(etree.SubElement(root, _q(SAMLP, "Status")), _q(SAMLP, "StatusCode"), Value=status)
        return etree.tostring(self._signed(root, options or Options()) if sign else root)

    # -- what an SP sends us -----------------------------------------------------------------

    @staticmethod
    def authn_request_id(location: str) -> str:
        """Return the ID of the AuthnRequest carried by an HTTP-Redirect URL."""
        query = parse_qs(urlsplit(location).query)
        xml = zlib.decompress(base64.b64decode(query["SAMLRequest"][0]), -15)
        return str(etree.fromstring(xml).get("ID"))


def b64(xml: bytes) -> str:
    return base64.b64encode(xml).decode()


def clone(xml: bytes) -> etree._Element:
    return etree.fromstring(xml)


def set_name_id(root: etree._Element, value: str) -> None:
    for name_id in root.iter(_q(SAML, "NameID")):
        name_id.text = value


# -- the eight XML signature wrapping shapes (Somorovsky et al., "On Breaking SAML", 2012) --------
# Each takes a response signed for the attacker and returns one claiming to be `victim`.

def _strip_signature(element: etree._Element) -> etree._Element:
    for sig in element.findall(_q(DS, "Signature")):
        element.remove(sig)
    return element


def _evil_assertion(assertion: etree._Element, victim: str, *, keep_signature: bool = False) -> etree._Element:
    evil = deepcopy(assertion)
    if not keep_signature:
        _strip_signature(evil)
    evil.set("ID", f"_evil{uuid.uuid4().hex}")
    set_name_id(evil, victim)
    return evil


def xsw1(signed_response: bytes, victim: str) -> bytes:
    """Evil response at the root; the original signed response inside its Signature's Object."""
    original = clone(signed_response)
    evil = _strip_signature(deepcopy(original))
    evil.set("ID", f"_evil{uuid.uuid4().hex}")
    set_name_id(evil, victim)
    signature = deepcopy(original.find(_q(DS, "Signature")))
    obj = etree.SubElement(signature, _q(DS, "Object"))
    obj.append(_strip_signature(original))
    evil.find(_q(SAML, "Issuer")).addnext(signature)
    return etree.tostring(evil)


def xsw2(signed_response: bytes, victim: str) -> bytes:
    """Evil response at the root; the original response as a detached sibling before its Signature."""
    original = clone(signed_response)
    evil = _strip_signature(deepcopy(original))
    evil.set("ID", f"_evil{uuid.uuid4().hex}")
    set_name_id(evil, victim)
    signature = deepcopy(original.find(_q(DS, "Signature")))
    issuer = evil.find(_q(SAML, "Issuer"))
    issuer.addnext(signature)
    issuer.addnext(_strip_signature(original))
    return etree.tostring(evil)


def xsw3(signed_response: bytes, victim: str) -> bytes:
    """An unsigned evil assertion inserted before the signed original."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    original.addprevious(_evil_assertion(original, victim))
    return etree.tostring(root)


def xsw4(signed_response: bytes, victim: str) -> bytes:
    """The signed original wrapped inside an unsigned evil assertion."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    evil = _evil_assertion(original, victim)
    original.addprevious(evil)
    evil.append(original)
    return etree.tostring(root)


def xsw5(signed_response: bytes, victim: str) -> bytes:
    """The signature kept on a modified assertion; an unsigned copy of the original appended at the end."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    copy = _strip_signature(deepcopy(original))
    original.set("ID", f"_evil{uuid.uuid4().hex}")
    set_name_id(original, victim)
    root.append(copy)
    return etree.tostring(root)


def xsw6(signed_response: bytes, victim: str) -> bytes:
    """The signature kept on a modified assertion; the original copy inside that Signature's Object."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    copy = _strip_signature(deepcopy(original))
    original.set("ID", f"_evil{uuid.uuid4().hex}")
    set_name_id(original, victim)
    etree.SubElement(original.find(_q(DS, "Signature")), _q(DS, "Object")).append(copy)
    return etree.tostring(root)


def xsw7(signed_response: bytes, victim: str) -> bytes:
    """The signed original hidden in an Extensions element; an unsigned evil assertion in its place."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    evil = _evil_assertion(original, victim)
    extensions = etree.Element(_q(SAMLP, "Extensions"))
    root.find(_q(SAML, "Issuer")).addnext(extensions)
    original.addprevious(evil)
    extensions.append(original)
    return etree.tostring(root)


def xsw8(signed_response: bytes, victim: str) -> bytes:
    """A modified assertion carrying the Signature, the unsigned original inside its Object."""
    root = clone(signed_response)
    original = root.find(_q(SAML, "Assertion"))
    evil = _evil_assertion(original, victim, keep_signature=True)
    copy = _strip_signature(deepcopy(original))
    copy.set("ID", original.get("ID"))
    etree.SubElement(evil.find(_q(DS, "Signature")), _q(DS, "Object")).append(copy)
    original.addprevious(evil)
    root.remove(original)
    return etree.tostring(root)


XSW = {"xsw1": xsw1, "xsw2": xsw2, "xsw3": xsw3, "xsw4": xsw4, "xsw5": xsw5, "xsw6": xsw6, "xsw7": xsw7,
       "xsw8": xsw8}
RESPONSE_SIGNED_XSW = {"xsw1", "xsw2"}


def post_form(response_xml: bytes, relay_state: str | None = None) -> dict[str, Any]:
    data = {"SAMLResponse": b64(response_xml)}
    if relay_state is not None:
        data["RelayState"] = relay_state
    return data
