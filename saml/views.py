"""SAML 2.0 sign-in under /saml/<org>/: SP metadata, SP-initiated login, and the ACS, around
saml.protocol (verification) and saml.service (the sign-in transaction).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, request
from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants as C
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata
from werkzeug.wrappers import Response as HttpResponse

from audit import Actor, clock
from audit.actor import system_actor
from identity import config, orgs, provisioning_log
from identity.errors import DomainError, SeatCapReached
from identity.model_base import max_length
from identity.models import Org
from identity.service import run
from saml import binding, configuration, links, once, protocol, service, web
from saml.connection import SpUrls, parse_idp_metadata, settings_dict, sp_endpoints, valid_certs
from saml.metadata_fetch import fetch_metadata
from saml.models import SamlConnection, SamlPendingRequest
from saml.protocol import Expected, Refused
from saml.refusals import UNPARSEABLE
from saml.web import DEFAULT_LANDING, MESSAGES, bp, log


def _max_issue_age() -> dt.timedelta:
    return dt.timedelta(seconds=int(current_app.config.get("SAML_MAX_ISSUE_AGE_SECONDS",
                                                           protocol.MAX_ISSUE_AGE.total_seconds())))


def _actor(org: Org) -> Actor:
    return Actor("system", "saml-sso", "SAML SSO", org_id=org.id, request_id=g.get("request_id"),
                 ip=request.remote_addr, user_agent=request.user_agent.string)


# The longest landing path kept: the pending request's RelayState column (a longer `next`, anybody's
# to send to /login, would not fit; it lands on the default instead).
MAX_LANDING = max_length(SamlPendingRequest.relay_state)


def safe_landing(value: str | None, base_url: str) -> str:
    """Return `value` as one of the service's own paths if it is one (or an absolute URL under BASE_URL,
    or the browser's path under BASE_URL's path) no longer than MAX_LANDING, else the default.

    The browser's path (`/identity/console/members`, what an admin copies from the address bar into
    the IdP's default RelayState) loses its prefix here: the redirect puts it on again
    (identity.web.base_path.prefixed_location), and twice is a 404."""
    if not value:
        return DEFAULT_LANDING
    prefix = config.path_under(base_url, "")
    for under in (base_url, prefix):
        if under and value.startswith(under + "/"):
            value = value[len(under):]
            break
    parts = urlsplit(value)
    if len(value) > MAX_LANDING:
        return DEFAULT_LANDING
    if (not value.startswith("/") or value.startswith("//") or "\\" in value or parts.scheme or parts.netloc
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)):
        return DEFAULT_LANDING
    return value


@bp.get("/saml/<slug>/metadata")
def metadata(slug: str) -> HttpResponse:
    """Serve the SP metadata: entity id, ACS (HTTP-POST), SLO (HTTP-Redirect and HTTP-POST), signing
    and encryption keys.

    AuthnRequestsSigned and WantAssertionsSigned say what this SP does and enforces: the org's
    `sign_authn_requests` and `want_assertions_signed` (off: a response signed as a whole will do).

    Before the org's SSO is configured (GET /sso and the console advertise this URL from the start),
    the endpoints and those settings' defaults, without KeyDescriptors: our key pair is made when
    SSO is configured (saml.configuration.configure_connection), and an IdP that reads this URL
    again (or the admin, the Okta guide's last step) then finds its certificate here.

    That page is built from the slug alone, and served the same for a slug no org has: the
    metadata URL is anonymous, and must not tell a stranger which orgs exist (the console's
    sign-in page does not either). Only a string no org could have as its slug is a 404.
    """
    loaded = web.load(slug)
    if loaded is None:
        if not orgs.is_slug(slug):
            return web.not_configured()
        xml = OneLogin_Saml2_Metadata.builder(sp_endpoints(SpUrls.of(web.base_url(), slug)), False, False)
        return Response(_with_posted_logout(xml), mimetype="application/samlmetadata+xml")
    org, connection = loaded
    sp = settings_dict(connection, web.urls(org))["sp"]
    xml = OneLogin_Saml2_Metadata.builder(sp, connection.sign_authn_requests, connection.want_assertions_signed)
    xml = OneLogin_Saml2_Metadata.add_x509_key_descriptors(_with_posted_logout(xml), connection.sp_cert_pem, True)
    return Response(xml, mimetype="application/samlmetadata+xml")


def _with_posted_logout(xml: str) -> str:
    """Add an HTTP-POST SingleLogoutService after python3-saml's one (HTTP-Redirect): the same URL
    takes both (saml.session_views), and IdPs such as Okta post their logout messages."""
    root = etree.fromstring(xml.encode())
    redirect_slo = root.find(f"{{{C.NS_MD}}}SPSSODescriptor/{{{C.NS_MD}}}SingleLogoutService")
    if redirect_slo is not None:
        posted = etree.Element(f"{{{C.NS_MD}}}SingleLogoutService", Binding=C.BINDING_HTTP_POST,
                               Location=redirect_slo.get("Location", ""))
        posted.tail = redirect_slo.tail
        redirect_slo.addnext(posted)
    return str(etree.tostring(root, encoding="unicode"))


@bp.get("/saml/<slug>/login")
def login(slug: str) -> HttpResponse:
    """Start an SP-initiated sign-in: remember the AuthnRequest id, redirect to the IdP (HTTP-Redirect)."""
    org, connection = web.connection_of(slug)
    landing = safe_landing(request.args.get("next"), web.base_url())
    auth = OneLogin_Saml2_Auth(web.saml_request(), web.settings(connection, org))
    url, request_id = auth.login(return_to=landing), auth.get_last_request_id()
    try:
        with web.db().transaction() as session:
            once.remember_request(session, org.id, request_id, landing, client_address=client_address(),
                                     limit=int(current_app.config.get("SAML_PENDING_REQUESTS_PER_ADDRESS",
                                                                      PENDING_REQUESTS_PER_ADDRESS)))
    except once.TooManyPendingRequests:
        refused = web.page(429, "Too many sign-ins", MESSAGES["too_many_pending_sign_ins"])
        refused.headers["Retry-After"] = str(int(once.PENDING_REQUEST_TTL.total_seconds()))
        return refused
    response = redirect(url, 302)
    _bind_browser(response, org, request_id)
    return response


# Unanswered sign-ins kept per client address for PENDING_REQUEST_TTL (10 minutes): generous for
# an office behind one NAT address, small enough that one address cannot fill the table.
PENDING_REQUESTS_PER_ADDRESS = 100


def client_address() -> str:
    """The client's address as the pending-request cap counts it: an IPv4 address, or the /64 of an
    IPv6 one (one host commonly holds a whole /64)."""
    raw = request.remote_addr or ""
    try:
        address = ipaddress.ip_address(raw.split("%")[0])
    except ValueError:
        return raw[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(getattr(address, "ipv4_mapped", None) or address)


def _bind_browser(response: HttpResponse, org: Org, request_id: str) -> None:
    """Add the binding of `request_id` to this browser's cookie (saml.binding)."""
    value = binding.with_request(current_app.config["SECRET_KEY"], org.id, request_id,
                                 request.cookies.get(binding.COOKIE), clock.now(), once.PENDING_REQUEST_TTL)
    attributes = binding.cookie_attributes(web.base_url(), org.slug, once.PENDING_REQUEST_TTL)
    response.set_cookie(binding.COOKIE, value, **attributes)
    if not attributes["secure"] and not current_app.extensions.get("saml.http_binding_warned"):
        current_app.extensions["saml.http_binding_warned"] = True
        log.warning("BASE_URL is plain http: the SAML sign-in binding cookie cannot be SameSite=None, and "
                    "Chrome sends it on the IdP's POST only within 2 minutes of /login; use https in production")


@bp.post("/saml/<slug>/acs")
def acs(slug: str) -> HttpResponse:
    """Consume a SAMLResponse (HTTP-POST): verify, use up, sign in, set the session cookie.

    The org and its connection come from this process's cache, not from a transaction of their
    own per sign-in. A cached connection is never trusted on its own: the sign-in transaction
    checks that it is still the stored version, and a refusal by it is re-read (an IdP may have
    rolled its certificate); when it changed, the response is verified again with the stored one.
    """
    try:
        return _consume(slug, _cached_connection(slug), stored=False)
    except configuration.ConnectionChanged:
        return _consume(slug, _cached_connection(slug, reload=True), stored=True)


def _consume(slug: str, loaded: tuple[Org, SamlConnection] | None, *, stored: bool) -> HttpResponse:
    """Verify with `loaded` and sign in; `stored`: it was just read, so a change means a refusal."""
    if loaded is None:
        return web.not_configured()
    org, connection = loaded
    actor, encoded = _actor(org), request.form.get("SAMLResponse", "")
    assertion = None
    try:
        assertion = _verify(slug, org, connection, encoded, stored=stored)
        _require_binding(org, assertion)
        signed_in = run(web.db(), actor, service.sign_in, org.id, assertion, connection=connection,
                        lifetime=web.lifetime())
    except configuration.ConnectionChanged:
        if not stored:
            raise
        return _refuse(org, actor, Refused("connection_changed", 409), assertion)
    except (Refused, DomainError) as error:
        return _refuse(org, actor, error, assertion)
    _note_sign_in(org, provisioning_log.Attempt("saml", "POST", request.path, 303, request_id=actor.request_id))
    landing = signed_in.relay_state or safe_landing(request.form.get("RelayState"), web.base_url())
    response = redirect(landing, 303)
    web.set_session_cookie(response, signed_in.token)
    web.set_device_cookie(response, links.device_members(signed_in.user))
    _release_binding(response, org, assertion)
    return response


def _require_binding(org: Org, assertion: protocol.Assertion) -> None:
    """Refuse a response to our AuthnRequest delivered to a browser that did not start it (saml.binding).

    The refusals sign-in gives first (a replayed assertion, an unknown or expired request) keep
    their precedence: `once.use_up` checks them, and uses both up as a refusal would.
    """
    if not assertion.in_response_to:
        return  # IdP-initiated: nothing was started here, the org's setting decides
    reason = binding.refusal(current_app.config["SECRET_KEY"], org.id, assertion.in_response_to,
                             request.cookies.get(binding.COOKIE))
    if reason is None:
        return
    with web.db().transaction() as session:
        once.use_up(session, org.id, assertion)
    raise Refused(reason, 403)


def _release_binding(response: HttpResponse, org: Org, assertion: protocol.Assertion | None) -> None:
    """Take the answered request's binding out of the browser's cookie; it is used up either way."""
    cookie = request.cookies.get(binding.COOKIE)
    if assertion is None or not assertion.in_response_to or cookie is None:
        return
    value = binding.without_request(current_app.config["SECRET_KEY"], org.id, assertion.in_response_to, cookie)
    attributes = binding.cookie_attributes(web.base_url(), org.slug, once.PENDING_REQUEST_TTL)
    if value:
        response.set_cookie(binding.COOKIE, value, **attributes)
    else:
        del attributes["max_age"]
        response.delete_cookie(binding.COOKIE, **attributes)


def _verify(slug: str, org: Org, connection: SamlConnection, encoded: str, *, stored: bool) -> protocol.Assertion:
    """Verify the response with `connection`; a refusal by a cached connection that has changed is a retry."""
    try:
        if not valid_certs(connection.idp_signing_certs):
            raise Refused("idp_certificate_not_valid", 403)
        in_response_to = protocol.response_in_response_to(encoded)
        expected = Expected(web.urls(org).acs, web.urls(org).entity_id, in_response_to, _max_issue_age())
        return protocol.verify_response(web.settings(connection, org), web.saml_request(), encoded, expected)
    except Refused as refused:
        if not stored and (_changed_since(slug, connection) or _refreshed(org, connection, refused.reason)):
            raise configuration.ConnectionChanged(org.id) from None
        raise


def _refreshed(org: Org, connection: SamlConnection, reason: str) -> bool:
    """Fetch the IdP's metadata again after a refused signature (configuration.refresh_due); tell whether
    the connection was updated, so that the response is verified once more with what it says.

    This is what makes an IdP's certificate rollover need no admin: the first response signed with
    the new key brings the new certificate in. A failed fetch changes nothing and is logged; the
    refusal stands.
    """
    url = connection.idp_metadata_url
    if not url or not configuration.refresh_due(connection, reason):
        return False
    try:
        idp = parse_idp_metadata(fetch_metadata(url), entity_id=connection.idp_entity_id)
        with web.db().transaction() as session:
            return configuration.refresh_connection(session, system_actor("saml metadata refresh"), org.id, idp,
                                              url=url, reason=reason)
    except (DomainError, OSError, ValueError) as error:
        log.warning("IdP metadata refresh after a refused signature failed: %s",
                    getattr(error, "message", type(error).__name__), extra={"org": org.slug})
        return False


def _changed_since(slug: str, connection: SamlConnection) -> bool:
    current = _cached_connection(slug, reload=True)
    return current is None or current[1].version != connection.version


CACHED_CONNECTIONS = "saml.cached_connections"
CACHED_CONNECTIONS_MAX = 1024


def _cached_connection(slug: str, *, reload: bool = False) -> tuple[Org, SamlConnection] | None:
    """Return the org and connection of `slug` as this app last read them (read now when unknown).

    Only ACS uses this: it verifies the signature with it, and `service.sign_in` confirms the
    stored version is the same before any of it (certificates or settings) counts.
    """
    cache: dict[str, tuple[Org, SamlConnection]] = current_app.extensions.setdefault(CACHED_CONNECTIONS, {})
    found = None if reload else cache.get(slug)
    if found is None:
        found = web.load(slug)
        if len(cache) >= CACHED_CONNECTIONS_MAX:
            cache.clear()
        if found is None:
            cache.pop(slug, None)
        else:
            cache[slug] = found
    return found


def _refuse(org: Org, actor: Actor, error: Refused | DomainError, assertion: protocol.Assertion | None) -> HttpResponse:
    """Audit a refused sign-in (its reason only), within the bounds of saml.refusals, and answer
    with a page, 4xx."""
    if isinstance(error, Refused):
        reason, status, user_id = error.reason, error.status, error.user_id
    else:
        reason, status, user_id = error.code, 403 if isinstance(error, SeatCapReached) else 400, None
    message = MESSAGES.get(reason, f"The sign-in response was refused ({reason}).")
    _audit_refusal(org, actor, reason, assertion, user_id,
                   provisioning_log.Attempt("saml", "POST", request.path, status, f"{reason}: {message}",
                                            request_id=actor.request_id))
    response = web.page(status, "Sign-in failed", message)
    _release_binding(response, org, assertion)
    return response


def _audit_refusal(org: Org, actor: Actor, reason: str, assertion: protocol.Assertion | None,
                   user_id: str | None, attempt: provisioning_log.Attempt) -> None:
    """Write the refusal to the audit log and the org's provisioning status, unless an anonymous poster
    could repeat it without bound (saml.refusals: not a SAML Response at all, or more of the same
    unsigned refusal this minute)."""
    counter, now = web.refusal_counter(), clock.now()
    changes: dict[str, object] = {}
    if reason in UNPARSEABLE:
        counter.unparseable(org.slug, reason, now)
        return
    if assertion is None or reason == "replayed":  # nothing the IdP signed once and for all vouches for it
        left_out = counter.admit(org.id, reason, now)
        if left_out is None:
            return
        if left_out:
            changes["left_out_since_last"] = left_out
    with web.db().transaction() as session:
        service.record_failure(session, actor, session.get(Org, org.id), reason, assertion=assertion,
                               user_id=user_id, extra=changes or None)
        provisioning_log.note(session, org.id, attempt)


SIGN_INS = provisioning_log.Throttle()


def _note_sign_in(org: Org, attempt: provisioning_log.Attempt) -> None:
    """Keep a sign-in in the org's provisioning status, at most once per 10 seconds per org and process."""
    provisioning_log.keep(web.db(), SIGN_INS, org.id, attempt)
