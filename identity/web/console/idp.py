"""Console page: identity provider setup, for the IT admin who connects Okta or Entra ID.

What our side is (the SP's entity id, ACS and metadata URLs; the SCIM base URL), with copy
buttons; the IdP's SAML settings from its metadata file or URL, JIT, IdP-initiated sign-in,
attribute names and "require SSO"; SCIM tokens and OAuth clients (identity.web.console.idp_credentials);
group-mapping rules (identity.web.console.idp_mappings); guides for Okta and Entra ID with this org's
values in place; and the provisioning status (identity.provisioning_log), so that a refused push
can be debugged without a ticket.

Reading it is IdP trust (`trust.read`: owners and admins); changing SSO is the owner's
(`trust.manage`), decided by the same services as the admin API (saml.service, identity.orgs).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec

from flask import Blueprint, current_app, g, request
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from audit import Actor
from identity import directory, group_membership, orgs, provisioning_log, scim_credentials
from identity.errors import DomainError, InvalidValue
from identity.web.console.common import (
    console_page,
    field,
    form_errors,
    may,
    reading,
    redirect_with_notice,
    render,
    status_of,
    submit,
)
from saml import configuration as saml_configuration
from saml import web as saml_web
from saml.connection import CLAIMS, DEFAULT_ATTRIBUTES, IdpSettings, SpUrls, cert_fingerprint, parse_idp_metadata
from saml.metadata_fetch import fetch_metadata
from saml.models import SamlConnection

P = ParamSpec("P")
bp = Blueprint("console_idp", __name__, url_prefix="/console")
PAGE = "/console/idp"
GUIDES = {"okta": ("Okta", "console/idp_guide_okta.html"),
          "entra": ("Microsoft Entra ID", "console/idp_guide_entra.html")}
URL_MAX_LENGTH = 2048  # SamlConnection.idp_metadata_url
METADATA_MAX_BYTES = 1024 * 1024  # as the request body: IdP metadata documents are a few KiB


def not_for_you(title: str = "Identity provider") -> Response:
    """The page a member or viewer gets: IdP trust is for owners and admins."""
    return render("console/refused.html", status=403, title=title, nav="idp",
                  message="Only the org's owners and admins see the identity provider setup.")


def our_values() -> dict[str, str]:
    """What the IdP admin pastes: our SP's URLs, the SCIM base URL and the OAuth token URL."""
    base = saml_web.base_url()
    sp = SpUrls.of(base, g.caller.org_slug)
    return {"entity_id": sp.entity_id, "metadata_url": sp.entity_id, "acs_url": sp.acs, "login_url": sp.login,
            "slo_url": sp.slo, "scim_base_url": f"{base}/scim/v2", "token_url": f"{base}/oauth/token"}


def idp_view(*, status: int = 200, errors: dict[str, str] | None = None, failed: str | None = None,
             issued: dict[str, str] | None = None, sso_form: dict[str, Any] | None = None) -> Response:
    """Render the whole page: `failed` names the form whose `errors` are shown, `issued` a secret shown once;
    `nonce` is the create forms' one-time id (identity.web.console.idp_credentials)."""
    org_id = g.caller.org_id
    with reading() as session:
        org, connection = saml_configuration.read_connection(session, g.actor, org_id)
        tokens = scim_credentials.list_scim_tokens(session, g.actor, org_id)
        clients = scim_credentials.list_scim_clients(session, g.actor, org_id)
        rules = directory.list_group_mappings(session, g.actor, org_id)
        teams = directory.team_names(session, g.actor, org_id, [r.team_id for r in rules if r.team_id])
        provisioning = provisioning_log.provisioning_status(session, g.actor, org_id)
    return render("console/idp.html", status=status, errors=errors, title="Identity provider", nav="idp",
                  failed=failed, issued=issued, values=our_values(), connection=connection,
                  idp=_idp_summary(connection), sso_form=sso_form or _sso_form(connection),
                  require_sso=org.require_sso, group_sync=org.group_sync, idp_may_grant_owner=org.idp_may_grant_owner,
                  claims=CLAIMS, default_attributes=DEFAULT_ATTRIBUTES,
                  tokens=list(reversed(tokens)), clients=list(reversed(clients)), rules=rules,
                  granted={rule.id: group_membership.org_role_granted(
                      rule.org_role, idp_may_grant_owner=org.idp_may_grant_owner) for rule in rules},
                  teams=teams, provisioning=provisioning, nonce=str(uuid.uuid4()))


def _idp_summary(connection: SamlConnection | None) -> dict[str, Any] | None:
    if connection is None:
        return None
    return {"entity_id": connection.idp_entity_id, "sso_url": connection.idp_sso_url,
            "slo_url": connection.idp_slo_url, "metadata_url": connection.idp_metadata_url,
            "fingerprints": [cert_fingerprint(cert) for cert in connection.idp_signing_certs or []],
            "refreshed": connection.metadata_refreshed_at, "updated": connection.updated_at}


# The connection's signing and encryption options, offered as the API offers them (identity.web.api.sso):
# sign our AuthnRequests; ask for encrypted assertions; require the assertion itself signed (a
# response signed only as a whole is then refused, and the SP metadata says so).
SIGNING_OPTIONS = ("sign_authn_requests", "want_assertions_encrypted", "want_assertions_signed")


def _sso_form(connection: SamlConnection | None) -> dict[str, Any]:
    """The SSO form as the connection stands (a new one: JIT on, IdP-initiated off, default attribute names)."""
    names = (connection.attribute_map or {}) if connection else {}
    return {"jit": connection.jit if connection else True,
            "allow_idp_initiated": connection.allow_idp_initiated if connection else False,
            **{option: getattr(connection, option) if connection else False for option in SIGNING_OPTIONS},
            "idp_metadata_url": (connection.idp_metadata_url or "") if connection else "",
            "attributes": {claim: ", ".join(names.get(claim) or []) for claim in CLAIMS}}


@bp.get("/idp")
@console_page
def idp_page() -> Response:
    """Show the identity provider setup and the provisioning status."""
    if not may("trust.read"):  # identity.roles, as the reads below ask it
        return not_for_you()
    return idp_view()


@bp.post("/idp/sso")
@console_page
def configure_sso() -> Response:
    """Configure SAML from an uploaded metadata file, a metadata URL, or the metadata in force (options only)."""
    form: dict[str, Any] = {
        "jit": request.form.get("jit") == "on", "allow_idp_initiated": request.form.get("allow_idp_initiated") == "on",
        **{option: request.form.get(option) == "on" for option in SIGNING_OPTIONS},
        "idp_metadata_url": field("idp_metadata_url"),
        "attributes": {claim: field(f"attr_{claim}") for claim in CLAIMS}}
    try:
        saml_configuration.authorize_configuration(g.actor, g.caller.org_id)  # before anything is fetched on our say
        idp, url = _metadata(form["idp_metadata_url"])
        submit(saml_configuration.configure_connection, g.caller.org_id, idp, jit=form["jit"],
               allow_idp_initiated=form["allow_idp_initiated"], attribute_map=_attribute_map(form["attributes"]),
               **{option: form[option] for option in SIGNING_OPTIONS},
               metadata_url=url, secret_key=current_app.config["SECRET_KEY"])
    except DomainError as error:
        return refused(error, "sso", sso_form=form)
    return redirect_with_notice(PAGE + "#sso", "Single sign-on saved.")


def _metadata(url: str) -> tuple[IdpSettings, str | None]:
    """The IdP settings from the uploaded file, else the URL, else the connection in force."""
    upload = request.files.get("idp_metadata")
    named = upload is not None and bool(upload.filename)  # a file chosen, even an empty one (a failed download)
    if named and url:
        raise InvalidValue("give the metadata file or its URL, not both", field="idp_metadata")
    if named:
        assert upload is not None
        return parse_idp_metadata(upload.read(METADATA_MAX_BYTES)), None
    if url:
        if len(url) > URL_MAX_LENGTH:
            raise InvalidValue(f"the metadata URL may have at most {URL_MAX_LENGTH} characters",
                               field="idp_metadata_url")
        return parse_idp_metadata(fetch_metadata(url)), url
    with reading() as session:
        connection = saml_configuration.read_connection(session, g.actor, g.caller.org_id)[1]
    if connection is None:
        raise InvalidValue("upload the IdP's metadata file or give its URL", field="idp_metadata")
    return IdpSettings(connection.idp_entity_id, connection.idp_sso_url, connection.idp_slo_url,
                       list(connection.idp_signing_certs or [])), connection.idp_metadata_url


def _attribute_map(texts: dict[str, str]) -> dict[str, list[str]]:
    """Claim -> attribute names from comma-separated fields; an empty field keeps the defaults."""
    return {claim: names for claim, text in texts.items()
            if (names := [name.strip() for name in text.split(",") if name.strip()])}


@bp.post("/idp/require-sso")
@console_page
def require_sso() -> Response:
    """Turn "members sign in only through the IdP" on or off (owners; identity.orgs.set_require_sso)."""
    wanted = request.form.get("require_sso") == "on"
    notice = "Members now sign in only through the IdP." if wanted else "Members may sign in without the IdP again."
    return change(Outcome("require_sso", "#sso", notice), orgs.set_require_sso, g.caller.org_id, wanted)


@dataclass(frozen=True)
class Outcome:
    """Where a form of this page leads: its name (`failed`: its errors show next to it), its section, its notice."""

    form: str
    anchor: str
    notice: str


def change(outcome: Outcome, service: Callable[Concatenate[Session, Actor, P], object], *args: P.args,
           **kwargs: P.kwargs) -> Response:
    """Run one domain service for a form of this page: back to the page with the outcome's notice, or
    the page again with the error next to the form."""
    try:
        submit(service, *args, **kwargs)
    except DomainError as error:
        return refused(error, outcome.form)
    return redirect_with_notice(PAGE + outcome.anchor, outcome.notice)


def refused(error: DomainError, failed: str, **context: Any) -> Response:
    """Show the page again with the error next to the form `failed` (or a refusal for those who may not read it)."""
    if not may("trust.read"):
        return not_for_you()
    return idp_view(status=status_of(error), errors=form_errors(error), failed=failed, **context)


@bp.get("/idp/guide/<vendor>")
@console_page
def guide(vendor: str) -> Response:
    """Step-by-step setup for Okta or Microsoft Entra ID, with this org's values in place."""
    if vendor not in GUIDES:
        return render("console/refused.html", status=404, title="No such guide", nav="idp",
                      message="There are guides for Okta and for Microsoft Entra ID.")
    if not may("trust.read"):
        return not_for_you()
    name, template = GUIDES[vendor]
    return render(template, title=f"Set up {name}", nav="idp", values=our_values(), org_slug=g.caller.org_slug)
