"""SAML 2.0 SP endpoints under /saml/<org>/, and /me: the Flask seam around saml.protocol and saml.service.

`_saml_request` is the one function that turns the Flask request into python3-saml's request
dict; it builds the URL from BASE_URL, never from the Host header, so that Destination and
Recipient are compared with the address the IdP was configured with.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from html import escape
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, jsonify, redirect, request
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.metadata import OneLogin_Saml2_Metadata
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response as HttpResponse

from audit import Actor, clock
from audit.actor import system_actor
from audit.log import Target, record
from identity import sessions, users
from identity.errors import DomainError, SeatCapReached
from identity.models import Org
from identity.service import run
from saml import binding, links, protocol, service
from saml.connection import SpUrls, fetch_metadata, parse_idp_metadata, settings_dict, toolkit_settings, valid_certs
from saml.models import SamlConnection
from saml.protocol import Expected, Refused

bp = Blueprint("saml", __name__)
log = logging.getLogger("identity.saml")

DEFAULT_LANDING = "/me"
NOT_THIS_BROWSER = ("This sign-in was not started in this browser, or was started too long ago. "
                    "Please sign in again from this browser.")
MESSAGES = {
    "seat_cap_reached": "Your organization has no free seat for a new member. Ask an owner to raise the seat limit.",
    "user_deactivated": "Your account is deactivated in this organization.",
    "user_removed": "Your account was removed from this organization.",
    "user_not_provisioned": "Your account has not been provisioned in this organization yet.",
    "idp_initiated_not_allowed": "Sign in from this service's login page instead of the identity provider's.",
    "replayed": "This sign-in response was already used. Please sign in again.",
    "sso_required": "This organization requires single sign-on: sign in through your identity provider.",
    "link_invalid": "This sign-in link is unknown, expired or already used. Ask for a new one.",
    "concurrent_sign_in": "Another sign-in for this account was in progress. Please sign in again.",
    "connection_changed": "Single sign-on was being reconfigured. Please sign in again.",
    binding.MISSING: NOT_THIS_BROWSER,
    binding.MISMATCH: NOT_THIS_BROWSER,
}


def _db() -> Any:
    from identity.app import database

    return database()


def _base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def _saml_request() -> dict[str, Any]:
    """Return python3-saml's request dict for the current request, its URL taken from BASE_URL."""
    base = urlsplit(_base_url())
    return {
        "https": "on" if base.scheme == "https" else "off",
        "http_host": base.netloc,
        "script_name": base.path.rstrip("/") + request.path,
        "get_data": request.args.to_dict(),
        "post_data": request.form.to_dict(),
        "query_string": request.query_string.decode("latin-1"),
        # Verify redirect-binding signatures over the query exactly as sent (Entra encodes lowercase).
        "validate_signature_from_qs": True,
    }


def _lifetime() -> sessions.Lifetime:
    cfg = current_app.config
    return sessions.Lifetime(idle=dt.timedelta(minutes=int(cfg.get("SESSION_IDLE_MINUTES", 60))),
                             absolute=dt.timedelta(hours=int(cfg.get("SESSION_ABSOLUTE_HOURS", 12))))


def _max_issue_age() -> dt.timedelta:
    return dt.timedelta(seconds=int(current_app.config.get("SAML_MAX_ISSUE_AGE_SECONDS",
                                                           protocol.MAX_ISSUE_AGE.total_seconds())))


def _page(status: int, title: str, message: str) -> HttpResponse:
    """Return a plain HTML page for a refused or failed step; never a stack trace or message content."""
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head><body>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
            f"<p><small>Request id: {escape(str(g.get('request_id', '')))}</small></p></body></html>")
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})


def _load(slug: str) -> tuple[Org, SamlConnection] | None:
    with _db().reading() as session:
        return service.find_connection(session, slug)


def _not_configured() -> HttpResponse:
    return _page(404, "Single sign-on is not available", "No SAML single sign-on is configured here.")


def _actor(org: Org) -> Actor:
    return Actor("system", "saml-sso", "SAML SSO", org_id=org.id, request_id=g.get("request_id"),
                 ip=request.remote_addr, user_agent=request.user_agent.string)


def _urls(org: Org) -> SpUrls:
    return SpUrls.of(_base_url(), org.slug)


def _settings(connection: SamlConnection, org: Org, **overrides: Any) -> OneLogin_Saml2_Settings:
    return toolkit_settings(connection, _urls(org), **overrides)


def safe_landing(value: str | None, base_url: str) -> str:
    """Return `value` if it is a path of this service (or an absolute URL under BASE_URL), else the default."""
    if not value:
        return DEFAULT_LANDING
    if value.startswith(base_url + "/"):
        value = value[len(base_url):]
    parts = urlsplit(value)
    if (not value.startswith("/") or value.startswith("//") or "\\" in value or parts.scheme or parts.netloc
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)):
        return DEFAULT_LANDING
    return value


@bp.get("/saml/<slug>/metadata")
def metadata(slug: str) -> HttpResponse:
    """Serve the SP metadata: entity id, ACS (HTTP-POST), SLO (HTTP-Redirect), signing and encryption keys."""
    loaded = _load(slug)
    if loaded is None:
        return _not_configured()
    org, connection = loaded
    sp = settings_dict(connection, _urls(org))["sp"]
    xml = OneLogin_Saml2_Metadata.builder(sp, connection.sign_authn_requests, True)
    xml = OneLogin_Saml2_Metadata.add_x509_key_descriptors(xml, connection.sp_cert_pem, True)
    return Response(xml, mimetype="application/samlmetadata+xml")


@bp.get("/saml/<slug>/login")
def login(slug: str) -> HttpResponse:
    """Start an SP-initiated sign-in: remember the AuthnRequest id, redirect to the IdP (HTTP-Redirect)."""
    loaded = _load(slug)
    if loaded is None:
        return _not_configured()
    org, connection = loaded
    landing = safe_landing(request.args.get("next"), _base_url())
    auth = OneLogin_Saml2_Auth(_saml_request(), _settings(connection, org))
    url, request_id = auth.login(return_to=landing), auth.get_last_request_id()
    with _db().transaction() as session:
        service.remember_request(session, org.id, request_id, landing)
    response = redirect(url, 302)
    _bind_browser(response, org, request_id)
    return response


def _bind_browser(response: HttpResponse, org: Org, request_id: str) -> None:
    """Add the binding of `request_id` to this browser's cookie (saml.binding)."""
    value = binding.with_request(current_app.config["SECRET_KEY"], org.id, request_id,
                                 request.cookies.get(binding.COOKIE), clock.now(), service.PENDING_REQUEST_TTL)
    attributes = binding.cookie_attributes(_base_url(), org.slug, service.PENDING_REQUEST_TTL)
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
    except service.ConnectionChanged:
        return _consume(slug, _cached_connection(slug, reload=True), stored=True)


def _consume(slug: str, loaded: tuple[Org, SamlConnection] | None, *, stored: bool) -> HttpResponse:
    """Verify with `loaded` and sign in; `stored`: it was just read, so a change means a refusal."""
    if loaded is None:
        return _not_configured()
    org, connection = loaded
    actor, encoded = _actor(org), request.form.get("SAMLResponse", "")
    assertion = None
    try:
        assertion = _verify(slug, org, connection, encoded, stored=stored)
        _require_binding(org, assertion)
        signed_in = run(_db(), actor, service.sign_in, org.id, assertion, connection=connection,
                        lifetime=_lifetime())
    except service.ConnectionChanged:
        if not stored:
            raise
        return _refuse(org, actor, Refused("connection_changed", 409), assertion)
    except (Refused, DomainError) as error:
        return _refuse(org, actor, error, assertion)
    except IntegrityError:  # two first sign-ins of one new user raced; the other one won
        return _refuse(org, actor, Refused("concurrent_sign_in", 409), assertion)
    landing = signed_in.relay_state or safe_landing(request.form.get("RelayState"), _base_url())
    response = redirect(landing, 303)
    _set_session_cookie(response, signed_in.token)
    _release_binding(response, org, assertion)
    return response


def _require_binding(org: Org, assertion: protocol.Assertion) -> None:
    """Refuse a response to our AuthnRequest delivered to a browser that did not start it (saml.binding).

    The refusals sign-in gives first (a replayed assertion, an unknown or expired request) keep
    their precedence: `service.use_up` checks them, and uses both up as a refusal would.
    """
    if not assertion.in_response_to:
        return  # IdP-initiated: nothing was started here, the org's setting decides
    reason = binding.refusal(current_app.config["SECRET_KEY"], org.id, assertion.in_response_to,
                             request.cookies.get(binding.COOKIE))
    if reason is None:
        return
    with _db().transaction() as session:
        service.use_up(session, org.id, assertion)
    raise Refused(reason, 403)


def _release_binding(response: HttpResponse, org: Org, assertion: protocol.Assertion | None) -> None:
    """Take the answered request's binding out of the browser's cookie; it is used up either way."""
    cookie = request.cookies.get(binding.COOKIE)
    if assertion is None or not assertion.in_response_to or cookie is None:
        return
    value = binding.without_request(current_app.config["SECRET_KEY"], org.id, assertion.in_response_to, cookie)
    attributes = binding.cookie_attributes(_base_url(), org.slug, service.PENDING_REQUEST_TTL)
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
        expected = Expected(_urls(org).acs, _urls(org).entity_id, in_response_to, _max_issue_age())
        return protocol.verify_response(_settings(connection, org), _saml_request(), encoded, expected)
    except Refused as refused:
        if not stored and (_changed_since(slug, connection) or _refreshed(org, connection, refused.reason)):
            raise service.ConnectionChanged(org.id) from None
        raise


def _refreshed(org: Org, connection: SamlConnection, reason: str) -> bool:
    """Fetch the IdP's metadata again after a refused signature (service.refresh_due); tell whether
    the connection was updated, so that the response is verified once more with what it says.

    This is what makes an IdP's certificate rollover need no admin: the first response signed with
    the new key brings the new certificate in. A failed fetch changes nothing and is logged; the
    refusal stands.
    """
    url = connection.idp_metadata_url
    if not url or not service.refresh_due(connection, reason):
        return False
    try:
        idp = parse_idp_metadata(fetch_metadata(url))
        with _db().transaction() as session:
            return service.refresh_connection(session, system_actor("saml metadata refresh"), org.id, idp,
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
        found = _load(slug)
        if len(cache) >= CACHED_CONNECTIONS_MAX:
            cache.clear()
        if found is None:
            cache.pop(slug, None)
        else:
            cache[slug] = found
    return found


def _refuse(org: Org, actor: Actor, error: Refused | DomainError, assertion: protocol.Assertion | None) -> HttpResponse:
    """Audit a refused sign-in (its reason only) and answer with a page, 4xx."""
    if isinstance(error, Refused):
        reason, status, user_id = error.reason, error.status, error.user_id
    else:
        reason, status, user_id = error.code, 403 if isinstance(error, SeatCapReached) else 400, None
    with _db().transaction() as session:
        service.record_failure(session, actor, session.get(Org, org.id), reason, assertion=assertion, user_id=user_id)
    message = MESSAGES.get(reason, f"The sign-in response was refused ({reason}).")
    response = _page(status, "Sign-in failed", message)
    _release_binding(response, org, assertion)
    return response


def _set_session_cookie(response: HttpResponse, token: str) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(sessions.COOKIE, sessions.cookie_value(current_app.config["SECRET_KEY"], token),
                        max_age=int(_lifetime().absolute.total_seconds()), path="/", httponly=True,
                        samesite="Lax", secure=_base_url().startswith("https://"))


def _session_token() -> str | None:
    return sessions.token_of(current_app.config["SECRET_KEY"], request.cookies.get(sessions.COOKIE))


@bp.get("/me")
def me() -> HttpResponse | tuple[HttpResponse, int]:
    """Tell who is signed in: id, userName, email, org and roles; 401 when nobody is."""
    with _db().transaction() as session:
        found = sessions.resolve_session(session, _session_token(), _lifetime())
        if found is None:
            return jsonify({"error": "unauthenticated", "message": "nobody is signed in"}), 401
        org = session.get(Org, found.user.org_id)
        role = users.org_role(session, found.user.id)
        teams = users.team_roles(session, found.user.id)
        body = {"id": found.user.id, "userName": found.user.user_name, "email": found.user.email,
                "org": {"id": org.id, "slug": org.slug, "name": org.name},
                "roles": [role] if role else [], "teams": [{"id": t, "role": r} for t, r in sorted(teams.items())],
                "signInMethod": found.session.method}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/saml/<slug>/logout", methods=["GET", "POST"])
def logout(slug: str) -> HttpResponse:
    """Sign out here, then at the IdP over HTTP-Redirect when it has a logout endpoint."""
    loaded = _load(slug)
    with _db().transaction() as session:
        ended = sessions.end_session(session, _session_token())
        if ended is not None:
            _record_logout(session, ended.org_id, ended.user_id, "sp")
    if loaded is None or ended is None or not loaded[1].idp_slo_url or not ended.name_id:
        return _signed_out()
    org, connection = loaded
    auth = OneLogin_Saml2_Auth(_saml_request(), _settings(connection, org))
    response = redirect(auth.logout(name_id=ended.name_id, session_index=ended.session_index,
                                    name_id_format=ended.name_id_format, return_to=None), 302)
    _clear_session_cookie(response)
    return response


def _signed_out() -> HttpResponse:
    response = _page(200, "Signed out", "You are signed out.")
    _clear_session_cookie(response)
    return response


def _clear_session_cookie(response: HttpResponse) -> None:
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="Lax",
                           secure=_base_url().startswith("https://"))


@bp.get("/saml/<slug>/slo")
def slo(slug: str) -> HttpResponse:
    """Single logout over HTTP-Redirect: the IdP's signed LogoutRequest, or its LogoutResponse to ours."""
    loaded = _load(slug)
    if loaded is None:
        return _not_configured()
    if "SAMLResponse" in request.args:  # the IdP's answer to our LogoutRequest: we had already signed out
        return _signed_out()
    org, connection = loaded
    auth = OneLogin_Saml2_Auth(_saml_request(), _settings(connection, org, wantMessagesSigned=True))
    try:
        target = auth.process_slo(keep_local_session=True)
    except Exception:  # python3-saml raises bare errors for a missing or unreadable message
        return _page(400, "Sign-out failed", "The logout message was not readable.")
    if auth.get_errors() or not target:
        return _page(400, "Sign-out failed", "The logout message was refused.")
    _end_idp_sessions(org, auth)
    response = redirect(target, 302)
    _clear_session_cookie(response)
    return response


def _end_idp_sessions(org: Org, auth: OneLogin_Saml2_Auth) -> None:
    xml = auth.get_last_request_xml()
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    with _db().transaction() as session:
        for ended in sessions.end_idp_sessions(session, org.id, name_id, indexes):
            _record_logout(session, org.id, ended.user_id, "idp")


def _record_logout(session: Any, org_id: str, user_id: str, initiated_by: str) -> None:
    actor = Actor("user", user_id, user_id, org_id=org_id, request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    record(session, actor, "sso.logged_out", Target("user", user_id, user_id),
           {"initiated_by": initiated_by}, org_id=org_id)


@bp.get("/login/link/<token>")
def link_page(token: str) -> HttpResponse:
    """Show a button that uses the link: a GET changes nothing, so mail scanners cannot use it up."""
    with _db().reading() as session:
        live = links.link_owner(session, token) is not None
    if not live:
        return _page(400, "Sign-in failed", MESSAGES["link_invalid"])
    body = ("<!doctype html><html><head><meta charset='utf-8'><title>Sign in</title></head><body>"
            "<form method='post'><button type='submit'>Sign in</button></form></body></html>")
    return Response(body, mimetype="text/html")


@bp.post("/login/link/<token>")
def link_sign_in(token: str) -> HttpResponse:
    """Use a one-time sign-in link (members only when the org does not require SSO; owners always)."""
    actor = Actor("system", "login-link", "sign-in link", request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    try:
        signed_in = run(_db(), actor, links.sign_in_with_link, token, lifetime=_lifetime())
    except DomainError as error:
        org_id, user_id = error.context.get("org_id"), error.context.get("user_id")
        if org_id:
            with _db().transaction() as session:
                service.record_failure(session, replace(actor, org_id=org_id), session.get_one(Org, org_id),
                                       error.code, user_id=user_id)
        return _page(403 if isinstance(error, links.SsoRequired) else 400, "Sign-in failed",
                     MESSAGES.get(error.code, "Sign-in failed."))
    response = redirect(DEFAULT_LANDING, 303)
    _set_session_cookie(response, signed_in.token)
    return response
