"""Admin API for the org's SAML single sign-on (under /api/v1): what the IdP admin needs from us,
and the IdP's settings from its metadata document or URL (fetched under saml.metadata_fetch's
rules), as `identity saml configure` sets them.

`PUT /orgs/{org}/sso` goes through `saml.configuration.configure_connection`, the one place a
connection changes (audited `sso.configured` or `sso.updated` with the API key as actor). "Require
SSO" is an org setting (`PATCH /orgs/{org}/settings`, `require_sso`) and is shown here.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify

from identity.errors import InvalidValue
from identity.models import Org
from identity.service import run
from identity.web.api.common import ADMIN, adopt, authenticated, caller_org_id, json_body
from identity.web.context import database
from saml import configuration, identities, web
from saml.connection import CLAIMS, SpUrls, cert_fingerprint, parse_idp_metadata
from saml.metadata_fetch import fetch_metadata
from saml.models import SamlConnection

bp = adopt(Blueprint("api_sso", __name__, url_prefix="/api/v1"))

OPTIONS = ("jit", "allow_idp_initiated", "sign_authn_requests", "want_assertions_encrypted", "want_assertions_signed")
FIELDS = ("idp_metadata_xml", "idp_metadata_url", *OPTIONS, "attribute_map")
URL_MAX_LENGTH = 2048  # SamlConnection.idp_metadata_url


def _view(org: Org, connection: SamlConnection | None) -> dict[str, Any]:
    urls = SpUrls.of(web.base_url(), org.slug)  # the app's BASE_URL, as the SAML pages use
    sp = {"entity_id": urls.entity_id, "metadata_url": urls.entity_id, "acs_url": urls.acs, "login_url": urls.login,
          "slo_url": urls.slo}
    idp = None if connection is None else {
        "entity_id": connection.idp_entity_id, "sso_url": connection.idp_sso_url, "slo_url": connection.idp_slo_url,
        "signing_cert_sha256": [cert_fingerprint(c) for c in connection.idp_signing_certs or []],
        "metadata_url": connection.idp_metadata_url,
        **{name: getattr(connection, name) for name in OPTIONS}, "attribute_map": connection.attribute_map}
    return {"configured": connection is not None, "require_sso": org.require_sso, "sp": sp, "idp": idp}


@bp.get("/orgs/<org_ref>/sso")
@authenticated(scope=ADMIN)
def get_sso(org_ref: str) -> Response:
    """The SP's URLs for the IdP admin, and the IdP settings in force (null until configured)."""
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        return jsonify(_view(*configuration.read_connection(session, g.actor, org_id)))


def _flag(data: dict[str, Any], name: str) -> bool | None:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise InvalidValue(f"{name} must be true or false", field=name)
    return value


def _attribute_map(data: dict[str, Any]) -> dict[str, list[str]] | None:
    """`{claim: attribute name or names}`, claims as `identity saml configure --attribute` takes them."""
    value = data.get("attribute_map")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidValue("attribute_map must be an object of claim: attribute names", field="attribute_map")
    found: dict[str, list[str]] = {}
    for claim, names in value.items():
        names = [names] if isinstance(names, str) else names
        if claim not in CLAIMS or not isinstance(names, list) or not names or \
                not all(isinstance(n, str) and n.strip() for n in names):
            raise InvalidValue(f"attribute_map: {claim!r} must be one of {', '.join(CLAIMS)} with attribute names",
                               field="attribute_map")
        found[claim] = [n.strip() for n in names]
    return found


def _metadata_url(data: dict[str, Any]) -> str | None:
    """The metadata URL when the body gives one, after checking that it gives exactly one source."""
    xml, url = data.get("idp_metadata_xml"), data.get("idp_metadata_url")
    if (xml is None) == (url is None):
        raise InvalidValue("give exactly one of idp_metadata_xml and idp_metadata_url", field="idp_metadata_xml")
    if url is None:
        return None
    if not isinstance(url, str) or not url.strip() or len(url) > URL_MAX_LENGTH:
        raise InvalidValue(f"idp_metadata_url must be the https URL of the IdP's SAML metadata, at most "
                           f"{URL_MAX_LENGTH} characters", field="idp_metadata_url")
    return url.strip()


def _metadata_xml(data: dict[str, Any]) -> str:
    xml = data.get("idp_metadata_xml")
    if not isinstance(xml, str) or not xml.strip():
        raise InvalidValue("idp_metadata_xml must be the IdP's SAML metadata document", field="idp_metadata_xml")
    return xml


@bp.put("/orgs/<org_ref>/sso")
@authenticated(scope=ADMIN)
def configure_sso(org_ref: str) -> Response:
    """Configure the IdP from its metadata, given as XML or as its URL (fetched now, and again by
    `identity saml refresh` and when a signature is refused); the same as `identity saml configure`."""
    org_id, data = caller_org_id(org_ref), json_body(*FIELDS)
    jit, idp_initiated, sign, encrypted, signed = (_flag(data, name) for name in OPTIONS)
    attribute_map = _attribute_map(data)
    url = _metadata_url(data)
    configuration.authorize_configuration(g.actor, org_id)  # before anything is fetched on the caller's say
    idp = parse_idp_metadata(fetch_metadata(url) if url is not None else _metadata_xml(data).encode())

    run(database(), g.actor, configuration.configure_connection, org_id, idp, jit=jit,
        allow_idp_initiated=idp_initiated, sign_authn_requests=sign, want_assertions_encrypted=encrypted,
        want_assertions_signed=signed, attribute_map=attribute_map, metadata_url=url,
        secret_key=current_app.config["SECRET_KEY"])
    with database().reading() as session:
        return jsonify(_view(*configuration.read_connection(session, g.actor, org_id)))


@bp.get("/orgs/<org_ref>/members/<user_id>/sso-identities")
@authenticated(scope=ADMIN)
def get_sso_identities(org_ref: str, user_id: str) -> Response:
    """The IdP identities (persistent NameIDs) a member is linked to: the one that signs in as them."""
    org_id = caller_org_id(org_ref)
    with database().reading() as session:
        found = identities.linked_identities(session, g.actor, org_id, user_id)
    return jsonify({"identities": [link.as_dict() for link in found]})


@bp.delete("/orgs/<org_ref>/members/<user_id>/sso-identities")
@authenticated(scope=ADMIN)
def unlink_sso_identities(org_ref: str, user_id: str) -> Response:
    """Unlink a member from its IdP identities (owners only): for a member refused `name_id_mismatch`
    after the IdP's identity of them changed. Their sessions end; their next sign-in links anew."""
    found = run(database(), g.actor, identities.unlink_identities, caller_org_id(org_ref), user_id)
    return jsonify({"unlinked": [link.as_dict() for link in found]})


_NULLABLE_TEXT = {"type": ["string", "null"]}
_LINKS = {"type": "array", "items": {"type": "object", "required": ["idp_entity_id", "name_id", "linked_at"],
                                      "properties": {"idp_entity_id": {"type": "string"}, "name_id": {"type": "string"},
                                                     "linked_at": {"type": "string", "format": "date-time"}}}}
OPENAPI_SCHEMAS: dict[str, Any] = {
    "SsoIdentities": {"type": "object", "required": ["identities"], "properties": {"identities": _LINKS}},
    "SsoUnlinked": {"type": "object", "required": ["unlinked"], "properties": {"unlinked": _LINKS}},
    "Sso": {"type": "object", "required": ["configured", "require_sso", "sp", "idp"], "properties": {
        "configured": {"type": "boolean"}, "require_sso": {"type": "boolean"},
        "sp": {"type": "object", "properties": {name: {"type": "string"} for name in (
            "entity_id", "metadata_url", "acs_url", "login_url", "slo_url")}},
        "idp": {"type": ["object", "null"], "properties": {
            "entity_id": {"type": "string"}, "sso_url": {"type": "string"}, "slo_url": _NULLABLE_TEXT,
            "signing_cert_sha256": {"type": "array", "items": {"type": "string"}}, "metadata_url": _NULLABLE_TEXT,
            **{name: {"type": "boolean"} for name in OPTIONS}, "attribute_map": {"type": "object"}}}}},
    "SsoConfig": {"type": "object", "additionalProperties": False, "oneOf": [
        {"required": ["idp_metadata_xml"]}, {"required": ["idp_metadata_url"]}], "properties": {
        "idp_metadata_xml": {"type": "string", "description": "the IdP's SAML 2.0 metadata document"},
        "idp_metadata_url": {"type": "string", "maxLength": URL_MAX_LENGTH, "description": (
            "instead of the document: its https URL (Entra ID's App Federation Metadata Url, Okta's Metadata "
            "URL), fetched now and kept, so that a new signing certificate is picked up without an admin; it "
            "must resolve to public addresses only, unless the operator allows private ones")},
        **{name: {"type": ["boolean", "null"], "description": "absent or null: unchanged (new: the default)"}
           for name in OPTIONS},
        "attribute_map": {"type": ["object", "null"], "description": f"claim ({', '.join(CLAIMS)}) to the "
                          "attribute name or names the IdP sends it as; absent or null: unchanged",
                          "additionalProperties": {"anyOf": [{"type": "string"},
                                                             {"type": "array", "items": {"type": "string"}}]}}}},
}


def openapi_paths(op: Any, json_response: Any, ref: Any) -> dict[str, Any]:
    """This blueprint's operations, built with the admin API document's own helpers."""
    return {"/api/v1/orgs/{org}/sso": {
        "get": op("Single sign-on: our SP's URLs for the IdP admin, and the IdP settings in force",
                  json_response(ref("Sso")), params=("org",)),
        "put": op("Configure single sign-on from the IdP's metadata (audited sso.configured or sso.updated)",
                  json_response(ref("Sso")), body="SsoConfig", params=("org",)),
    }, "/api/v1/orgs/{org}/members/{user_id}/sso-identities": {
        "get": op("The IdP identities (persistent NameIDs) linked to a member", json_response(ref("SsoIdentities")),
                  params=("org", "user_id")),
        "delete": op("Unlink a member from its IdP identities (owners; audited sso.identity_unlinked; the member's "
                     "sessions end and the next sign-in links anew); 404 when none is linked",
                     json_response(ref("SsoUnlinked")), params=("org", "user_id")),
    }}
