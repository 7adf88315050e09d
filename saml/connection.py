"""An org's SAML connection as python3-saml settings: our key pair, the IdP's metadata, attribute names.

No Flask here: URLs are built from the configured BASE_URL, never from a request's Host header.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from onelogin.saml2.settings import OneLogin_Saml2_Settings

from audit import clock
from identity.errors import InvalidValue
from saml import sp_keys
from saml.models import SamlConnection

# Attribute names tried in order for each claim (Okta's defaults, Entra ID's claim URIs, LDAP OIDs).
# `user_name` names the member by their userName (saml.service): only an attribute its holder cannot
# edit, the one the IdP's SCIM sends as userName. Entra ID's `.../claims/name` is the UPN, as its
# SCIM userName is; Okta sends none by default (its admin adds an attribute statement and names it).
DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "user_name": ["http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"],
    "email": ["email", "mail", "Email", "user.email",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
              "urn:oid:0.9.2342.19200300.100.1.3"],
    "given_name": ["firstName", "givenName", "given_name",
                   "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname", "urn:oid:2.5.4.42"],
    "family_name": ["lastName", "sn", "surname", "family_name",
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname", "urn:oid:2.5.4.4"],
    "display_name": ["displayName", "display_name", "name",
                     "http://schemas.microsoft.com/identity/claims/displayname",
                     "urn:oid:2.16.840.1.113730.3.1.241"],
    "groups": ["groups", "memberOf", "Groups",
               "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
}
CLAIMS = tuple(DEFAULT_ATTRIBUTES)


@dataclass(frozen=True)
class SpUrls:
    """Our endpoints for one org, all under BASE_URL."""

    entity_id: str
    acs: str
    slo: str
    login: str

    @classmethod
    def of(cls, base_url: str, slug: str) -> SpUrls:
        root = f"{base_url.rstrip('/')}/saml/{slug}"
        return cls(entity_id=f"{root}/metadata", acs=f"{root}/acs", slo=f"{root}/slo", login=f"{root}/login")


@dataclass(frozen=True)
class IdpSettings:
    """What we keep from an IdP's metadata."""

    entity_id: str
    sso_url: str
    slo_url: str | None
    signing_certs: list[str]


def generate_sp_credentials(common_name: str, *, years: int = 10) -> tuple[str, str]:
    """Return (certificate PEM, private key PEM) of a new self-signed RSA-2048 SP key pair."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    now = clock.now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365 * years)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def parse_idp_metadata(xml: str | bytes, *, entity_id: str | None = None) -> IdpSettings:
    """Read the IdP's entity id, HTTP-Redirect SSO/SLO endpoints and signing certificates; with
    `entity_id`, those of that entity only (an aggregate lists many: the refresh reads the one the
    org trusts, never the first one the document happens to list).

    python3-saml's parser refuses DTDs and entities; a certificate that is not valid now is refused
    here so that a stale upload fails at configure time rather than at every sign-in.
    """
    if not xml.strip():  # an empty file is a failed download, not "keep the IdP in force"
        raise InvalidValue("the IdP metadata file is empty: download it from the IdP again", field="idp_metadata")
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=entity_id)
    except Exception as error:  # its parser raises bare Exceptions and lxml errors
        raise InvalidValue(f"unreadable IdP metadata: {type(error).__name__}", field="idp_metadata") from None
    idp = parsed.get("idp") or {}
    certs = list((idp.get("x509certMulti") or {}).get("signing") or [])
    if not certs and idp.get("x509cert"):
        certs = [idp["x509cert"]]
    sso = (idp.get("singleSignOnService") or {}).get("url")
    if not idp.get("entityId") or not sso:
        raise InvalidValue("the IdP metadata has no entityID or no HTTP-Redirect SSO endpoint", field="idp_metadata")
    if not certs:
        raise InvalidValue("the IdP metadata has no signing certificate", field="idp_metadata")
    if not valid_certs(certs):
        raise InvalidValue("no IdP signing certificate is valid now", field="idp_metadata")
    slo = (idp.get("singleLogoutService") or {}).get("url")
    return IdpSettings(idp["entityId"], sso, slo, [_normalize_cert(c) for c in certs])


def _normalize_cert(cert: str) -> str:
    body = cert.replace("-----BEGIN CERTIFICATE-----", "").replace("-----END CERTIFICATE-----", "")
    return "".join(body.split())


def cert_fingerprint(cert: str) -> str:
    """Return the SHA-256 fingerprint (hex) of a base64 DER certificate, as IdP consoles show it."""
    try:
        der = base64.b64decode(_normalize_cert(cert), validate=True)
    except ValueError:
        return "unreadable"
    return hashlib.sha256(der).hexdigest()


def _load_cert(cert: str) -> x509.Certificate | None:
    pem = f"-----BEGIN CERTIFICATE-----\n{_normalize_cert(cert)}\n-----END CERTIFICATE-----\n"
    try:
        return x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        return None


def valid_certs(certs: list[str], moment: dt.datetime | None = None) -> list[str]:
    """Return the certificates whose validity period contains `moment` (default: now)."""
    moment = moment or clock.now()
    found = []
    for cert in certs:
        loaded = _load_cert(cert)
        if loaded and loaded.not_valid_before_utc <= moment < loaded.not_valid_after_utc:
            found.append(cert)
    return found


def attribute_names(connection: SamlConnection, claim: str) -> list[str]:
    """Return the attribute names tried for `claim`: the org's own, else the defaults."""
    names = (connection.attribute_map or {}).get(claim)
    return list(names) if names else DEFAULT_ATTRIBUTES[claim]


# Built settings by (org, connection version, certificates valid now, URLs, overrides). A pure cache:
# every input is in the key, so a reconfigured org or an expired certificate is a new entry.
_TOOLKIT_SETTINGS: OrderedDict[tuple[Any, ...], OneLogin_Saml2_Settings] = OrderedDict()
_TOOLKIT_SETTINGS_MAX = 256
_TOOLKIT_LOCK = threading.Lock()


def toolkit_settings(connection: SamlConnection, urls: SpUrls, secrets: Sequence[str],
                     **overrides: Any) -> OneLogin_Saml2_Settings:
    """Return python3-saml's settings object for the connection (built once per version; 0.8 ms saved).

    Our private key is unsealed (saml.sp_keys) with `secrets`, SECRET_KEY then SECRET_KEY_PREVIOUS,
    only when the settings are built; the stored form and the secrets are part of the cache key.
    """
    key = (connection.org_id, connection.version, tuple(valid_certs(connection.idp_signing_certs)), urls,
           tuple(sorted(overrides.items())), connection.sp_key_pem, tuple(secrets))
    with _TOOLKIT_LOCK:
        found = _TOOLKIT_SETTINGS.get(key)
        if found is not None:
            _TOOLKIT_SETTINGS.move_to_end(key)
            return found
    settings = settings_dict(connection, urls, sp_keys.unseal(secrets, connection.org_id, connection.sp_key_pem))
    settings["security"].update(overrides)
    built = OneLogin_Saml2_Settings(settings, sp_validation_only=False)
    with _TOOLKIT_LOCK:
        _TOOLKIT_SETTINGS[key] = built
        while len(_TOOLKIT_SETTINGS) > _TOOLKIT_SETTINGS_MAX:
            _TOOLKIT_SETTINGS.popitem(last=False)
    return built


def sp_endpoints(urls: SpUrls) -> dict[str, Any]:
    """Return python3-saml's `sp` settings without keys: our entity id, ACS, SLO and NameID format."""
    return {
        "entityId": urls.entity_id,
        "assertionConsumerService": {"url": urls.acs, "binding": C.BINDING_HTTP_POST},
        "singleLogoutService": {"url": urls.slo, "binding": C.BINDING_HTTP_REDIRECT},
        "NameIDFormat": C.NAMEID_UNSPECIFIED,
    }


def settings_dict(connection: SamlConnection, urls: SpUrls, private_key: str | None = None) -> dict[str, Any]:
    """Return python3-saml settings for one org, strict, with the checks it leaves off turned on.

    `private_key` is our key's PEM, unsealed (saml.sp_keys); None leaves it out (the SP metadata).

    Only certificates valid now are trusted (python3-saml ignores validity periods). SHA-1 is
    refused (rejectDeprecatedAlgorithm). Signing is required for the assertion or the response
    around it; python3-saml refuses a response with neither. With the org's `want_assertions_signed`,
    the assertion itself must be signed (wantAssertionsSigned), as the SP metadata then says.
    """
    signing = valid_certs(connection.idp_signing_certs)
    idp: dict[str, Any] = {
        "entityId": connection.idp_entity_id,
        "singleSignOnService": {"url": connection.idp_sso_url, "binding": C.BINDING_HTTP_REDIRECT},
        # python3-saml requires x509cert or x509certMulti; an empty list means "nothing trusted".
        "x509certMulti": {"signing": signing or ["MA=="], "encryption": []},
    }
    if connection.idp_slo_url:
        idp["singleLogoutService"] = {"url": connection.idp_slo_url, "binding": C.BINDING_HTTP_REDIRECT}
    return {
        "strict": True,
        "debug": False,
        "sp": {**sp_endpoints(urls), "x509cert": connection.sp_cert_pem,
               **({"privateKey": private_key} if private_key is not None else {})},
        "idp": idp,
        "security": {
            "authnRequestsSigned": connection.sign_authn_requests,
            "logoutRequestSigned": True,
            "logoutResponseSigned": True,
            "wantMessagesSigned": False,
            "wantAssertionsSigned": connection.want_assertions_signed,
            "wantAssertionsEncrypted": connection.want_assertions_encrypted,
            "wantNameId": True,
            "wantNameIdEncrypted": False,
            "wantAttributeStatement": False,
            "requestedAuthnContext": False,
            "rejectDeprecatedAlgorithm": True,
            "signatureAlgorithm": C.RSA_SHA256,
            "digestAlgorithm": C.SHA256,
            "signMetadata": False,
            "wantXMLValidation": True,
            "allowRepeatAttributeName": True,
        },
    }

