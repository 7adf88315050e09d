"""Signed-in pages: /me, signing out (here and over SAML single logout), and one-time sign-in links."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from html import escape

from flask import Response, current_app, g, jsonify, redirect, request
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from onelogin.saml2.logout_response import OneLogin_Saml2_Logout_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from werkzeug.wrappers import Response as HttpResponse

from audit import Actor
from identity import mail, sessions, signed_in, signout
from identity.errors import DomainError
from identity.models import Org
from identity.service import run
from identity.web import security_headers as headers
from identity.web.context import cookie_path, secure_cookies
from saml import csrf, links, once, service, web
from saml import logout_messages as messages
from saml.models import SamlConnection
from saml.protocol import Refused
from saml.views import client_address
from saml.web import DEFAULT_LANDING, MESSAGES, bp


@bp.get("/me")
def me() -> HttpResponse | tuple[HttpResponse, int]:
    """Tell who is signed in: id, userName, email, org and roles; 401 when nobody is."""
    token = web.session_token()
    if token is None:  # no session cookie: answered without the database (anonymous requests write nothing)
        return _unauthenticated()
    with web.db().transaction() as session:
        found = signed_in.profile(session, token, web.lifetime())
    if found is None:
        return _unauthenticated()
    body = {"id": found.user_id, "userName": found.user_name, "email": found.email,
            "org": {"id": found.org_id, "slug": found.org_slug, "name": found.org_name},
            "roles": [found.role] if found.role else [],
            "teams": [{"id": t, "role": r} for t, r in sorted(found.teams.items())], "signInMethod": found.method}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


def _unauthenticated() -> tuple[HttpResponse, int]:
    return jsonify({"error": "unauthenticated", "message": "nobody is signed in"}), 401


LOGOUT = "logout"  # the sign-out form's purpose (saml.csrf)


@bp.get("/saml/<slug>/logout")
def logout_page(slug: str) -> HttpResponse:
    """Show a Sign out button; a GET signs nobody out (a link or an image on another site could).

    The form may lead to the IdP's logout endpoint only when the session is this org's (`logout`).
    """
    token = web.session_token()
    if token is None:
        return _signed_out()
    loaded = web.load(slug)
    with web.db().reading() as session:
        own = loaded is not None and sessions.org_of_session(session, token) == loaded[0].id
    idp_slo = [loaded[1].idp_slo_url] if own and loaded is not None and loaded[1].idp_slo_url else []
    return web.form_page("Sign out", "Sign out of this service?", "Sign out",
                         csrf.token(current_app.config["SECRET_KEY"], LOGOUT, token), form_targets=tuple(idp_slo))


@bp.post("/saml/<slug>/logout")
def logout(slug: str) -> HttpResponse:
    """Sign out here, then at the IdP over HTTP-Redirect when it has a logout endpoint.

    Only from our own sign-out form (saml.csrf: same origin, a token bound to this session). Single
    logout goes only to the IdP of the org whose session ended: at another org's URL (a link any
    tenant can send) the session ends here alone, so that its NameID and SessionIndex never reach
    an IdP the member did not sign in through.
    """
    token = web.session_token()
    if token is None:  # nobody to sign out: nothing is read or written
        return _signed_out()
    if not web.from_our_page(LOGOUT, token):
        return web.page(403, "Sign-out refused", MESSAGES["csrf"])
    loaded = web.load(slug)
    with web.db().transaction() as session:
        ended = signout.sign_out(session, _request_actor(), token)
    if (loaded is None or ended is None or ended.org_id != loaded[0].id or not loaded[1].idp_slo_url
            or not ended.name_id):
        return _signed_out()
    org, connection = loaded
    auth = OneLogin_Saml2_Auth(web.saml_request(), web.settings(connection, org))
    url = auth.logout(name_id=ended.name_id, session_index=ended.session_index, name_id_format=ended.name_id_format,
                      return_to=None)
    with web.db().transaction() as session:  # its LogoutResponse must answer this request, once
        once.remember_logout_request(session, org.id, auth.get_last_request_id())
    response = redirect(url, 302)
    web.clear_session_cookie(response)
    return response


def _signed_out() -> HttpResponse:
    response = web.page(200, "Signed out", "You are signed out.")
    web.clear_session_cookie(response)
    return response


@bp.get("/saml/<slug>/slo")
def slo(slug: str) -> HttpResponse:
    """Single logout over HTTP-Redirect: the IdP's signed LogoutRequest, or its LogoutResponse to ours.

    Nothing changes, not even this browser's cookie, until the message's signature verifies.
    """
    org, connection = web.connection_of(slug)
    auth = OneLogin_Saml2_Auth(web.saml_request(), web.settings(connection, org, wantMessagesSigned=True))
    try:
        target = auth.process_slo(keep_local_session=True)
    except Exception:  # python3-saml raises bare errors for a missing or unreadable message
        return web.page(400, "Sign-out failed", "The logout message was not readable.")
    if auth.get_errors():
        return _slo_refused("invalid_logout_message")
    kind = messages.RESPONSE if "SAMLResponse" in request.args else messages.REQUEST
    xml = auth.get_last_response_xml() if kind == messages.RESPONSE else auth.get_last_request_xml()
    try:
        message = messages.checked(kind, xml, _expected(org, connection, posted=False))
    except Refused as refused:
        return _slo_refused(refused.reason)
    return _accept(org, message, lambda: target)


@bp.post("/saml/<slug>/slo")
def slo_posted(slug: str) -> HttpResponse:
    """Single logout over HTTP-POST (Okta posts its LogoutResponse here): the signature is inside the XML.

    Verified as strictly as over HTTP-Redirect (saml.logout), then taken the same way. The IdP posts
    cross-site by design, so no form token is asked (saml.csrf): the IdP's signature, our pending
    request and the replay cache are its defence, and nothing changes before they all pass.
    """
    org, connection = web.connection_of(slug)
    settings = web.settings(connection, org, wantMessagesSigned=False)  # no query signature: the XML's
    try:
        message = messages.verify_posted(settings, web.saml_request(), request.form.to_dict(),
                                         _expected(org, connection, posted=True))
    except Refused as refused:
        return _slo_refused(refused.reason)
    return _accept(org, message, lambda: _logout_response_url(settings, message))


def _expected(org: Org, connection: SamlConnection, *, posted: bool) -> messages.Expected:
    return messages.Expected(web.urls(org).slo, connection.idp_entity_id, destination_required=posted)


def _slo_refused(reason: str) -> HttpResponse:
    web.log.info("single logout refused: %s", reason)  # the reason's code only, never message content
    return web.page(400, "Sign-out failed", "The logout message was refused.")


def _accept(org: Org, message: messages.LogoutMessage, answer: Callable[[], str | None]) -> HttpResponse:
    """Take a verified logout message once: a LogoutResponse uses up the request it answers, a
    LogoutRequest ends the sessions it names and is answered (`answer`: the IdP's URL with our
    LogoutResponse). Both are remembered in the replay cache until they expire."""
    try:
        if message.kind == messages.RESPONSE:  # the IdP's answer to our LogoutRequest: signed out already
            with web.db().transaction() as session:
                once.consume_logout_request(session, org.id, message.in_response_to or "")
                once.burn_assertion(session, org.id, f"{once.LOGOUT}{message.message_id}", message.expires_at)
            return _signed_out()
        ended_here = _end_idp_sessions(org, message)
    except Refused as refused:  # replayed, or answering nothing we sent: nothing ends, nothing is answered
        return _slo_refused(refused.reason)
    target = answer()
    if not target:
        return _slo_refused("invalid_logout_message")
    response = redirect(target, 302)
    if ended_here:  # the cookie goes only when its session was one the IdP named
        web.clear_session_cookie(response)
    return response


def _end_idp_sessions(org: Org, message: messages.LogoutMessage) -> bool:
    """End the sessions a verified LogoutRequest names; tell whether this browser's was one of them.

    Our answer is Success even when none matched (SAML core 2.0 section 3.7.3.1: a session
    participant answers with an error status only when it cannot end the principal's sessions; a
    subject with none left here, signed out or timed out, is signed out of this SP). The NameID
    compares through its key (identity.sessions.end_idp_sessions), so none matching means none live.
    """
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(message.xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(message.xml)
    with web.db().transaction() as session:  # Refused("replayed") the second time
        once.burn_assertion(session, org.id, f"{once.LOGOUT}{message.message_id}", message.expires_at)
        return signout.end_idp_sessions(session, _request_actor(), org.id, name_id, indexes, web.session_token())


def _logout_response_url(settings: OneLogin_Saml2_Settings, message: messages.LogoutMessage) -> str | None:
    """Our signed LogoutResponse to a posted LogoutRequest, as the IdP's HTTP-Redirect URL (the
    binding its metadata lists), as python3-saml answers one that came by HTTP-Redirect."""
    auth = OneLogin_Saml2_Auth(web.saml_request(), settings)
    builder = OneLogin_Saml2_Logout_Response(settings)
    builder.build(message.message_id)
    parameters = {"SAMLResponse": builder.get_response()}
    if request.form.get("RelayState"):
        parameters["RelayState"] = request.form["RelayState"]
    auth.add_response_signature(parameters, settings.get_security_data()["signatureAlgorithm"])
    url = auth.get_slo_response_url()
    return str(auth.redirect_to(url, parameters)) if url else None


def _request_actor() -> Actor:
    """The request's context as an actor; signout names the user whose session ends."""
    return Actor("system", "sign-out", "sign-out", request_id=g.get("request_id"), ip=request.remote_addr,
                 user_agent=request.user_agent.string)


LINK = "login-link"  # the sign-in link form's purpose (saml.csrf)


@bp.get("/login/link/<token>")
def link_page(token: str) -> HttpResponse:
    """Show a button that uses the link: a GET changes nothing, so mail scanners cannot use it up.

    The button's form carries a token bound to a cookie this page sets (saml.csrf), so that
    another site cannot post the attacker's own link from the victim's browser (a login CSRF).
    """
    with web.db().reading() as session:
        live = links.link_owner(session, token) is not None
    if not live:
        return web.page(400, "Sign-in failed", MESSAGES["link_invalid"])
    form_cookie = request.cookies.get(csrf.COOKIE) or csrf.new_form_cookie()
    response = web.form_page("Sign in", "Sign in to this service with your one-time link.", "Sign in",
                             csrf.token(current_app.config["SECRET_KEY"], LINK, form_cookie))
    response.set_cookie(csrf.COOKIE, form_cookie, max_age=int(links.LINK_TTL.total_seconds()),
                        path=cookie_path(links.LINK_PATH), httponly=True, samesite="Strict", secure=secure_cookies())
    return response


@bp.post("/login/link/<token>")
def link_sign_in(token: str) -> HttpResponse:
    """Use a one-time sign-in link (members only when the org does not require SSO; owners always).

    Only from the link's own page (saml.csrf); a refused post leaves the link unused.
    """
    if not web.from_our_page(LINK, request.cookies.get(csrf.COOKIE)):
        return web.page(403, "Sign-in refused", MESSAGES["csrf"])
    actor = Actor("system", "login-link", "sign-in link", request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    try:
        signed_in = run(web.db(), actor, links.sign_in_with_link, token, lifetime=web.lifetime(),
                        browser=request.cookies.get(BROWSER_COOKIE))
    except DomainError as error:
        org_id, user_id = error.context.get("org_id"), error.context.get("user_id")
        if org_id:
            with web.db().transaction() as session:
                service.record_failure(session, replace(actor, org_id=org_id), session.get_one(Org, org_id),
                                       error.code, user_id=user_id)
        return web.page(403 if isinstance(error, links.SsoRequired) else 400, "Sign-in failed",
                     MESSAGES.get(error.code, "Sign-in failed."))
    response = redirect(DEFAULT_LANDING, 303)
    web.set_session_cookie(response, signed_in.token)
    web.set_device_cookie(response, links.device_members(signed_in.user))
    return response


# Sign-in by email for orgs without SSO (or owners, break-glass): ask with the org and the address,
# get a one-time link by mail that works only in this browser (BROWSER_COOKIE, set when asking).
EMAIL = "login-email"  # the form's purpose (saml.csrf)
BROWSER_COOKIE = "identity_link_browser"
ASKED = ("If {email} may sign in to {org} with a link, one is on its way: it works once, for 15 minutes, "
         "in this browser.")


def _email_form(message: str = "", status: int = 200) -> HttpResponse:
    form_cookie = request.cookies.get(csrf.COOKIE) or csrf.new_form_cookie()
    field = csrf.token(current_app.config["SECRET_KEY"], EMAIL, form_cookie)
    body = ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Sign in by email</title></head><body>"
            f"<h1>Sign in by email</h1><p>{escape(message)}</p><form method='post'>"
            f"<input type='hidden' name='{csrf.FIELD}' value='{escape(field, quote=True)}'>"
            "<p><label for='org'>Organization</label> <input id='org' name='org' required></p>"
            "<p><label for='email'>Work email</label> <input id='email' name='email' type='email' required></p>"
            "<button type='submit'>Send me a sign-in link</button></form></body></html>")
    response = Response(body, status=status, mimetype="text/html", headers={
        "Cache-Control": "no-store", headers.CSP: headers.content_security_policy(())})
    response.set_cookie(csrf.COOKIE, form_cookie, max_age=3600, path=cookie_path("/login/"), httponly=True,
                        samesite="Strict", secure=secure_cookies())
    return response


@bp.get("/login/email")
def email_page() -> HttpResponse:
    """The form that asks for a sign-in link by email (the console may replace it)."""
    return _email_form()


def link_limits() -> links.Limits:
    cfg = current_app.config
    return links.Limits(int(cfg.get("SIGN_IN_LINKS_PER_ADDRESS", 3)), int(cfg.get("SIGN_IN_LINKS_PER_CLIENT", 20)),
                        int(cfg.get("SIGN_IN_LINKS_PER_ADDRESS_ALL_CLIENTS", 30)))


@bp.post("/login/email")
def ask_for_link() -> HttpResponse:
    """Mail a one-time sign-in link to a member; the answer is the same whether the address exists.

    Same status, body and cookie for a known and an unknown address; the mail goes out after the
    answer, in the background, and the answer waits until SIGN_IN_EMAIL_MIN_SECONDS have passed
    since the request began, so that its timing does not tell either. Only from our own form.
    """
    started = time.monotonic()
    if not web.from_our_page(EMAIL, request.cookies.get(csrf.COOKIE)):
        return web.page(403, "Sign-in refused", MESSAGES["csrf"])
    org, email = request.form.get("org", "").strip(), request.form.get("email", "").strip()
    if not org or not email or len(org) > 64 or len(email) > 320:
        return _email_form("Give your organization and your work email.", 400)
    browser = request.cookies.get(BROWSER_COOKIE) or csrf.new_form_cookie()
    actor = Actor("system", "sign-in-email", "sign-in link by email", request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    try:
        mail_ids = run(web.db(), actor, links.request_sign_in_links, [org], email, browser=browser,
                       client_address=client_address(), base_url=web.base_url(), limits=link_limits(),
                       device=web.presented_device())
    except links.TooManyRequests:
        return web.page(429, "Too many requests", "Too many sign-in links were asked for. Wait a few minutes.")
    for mail_id in mail_ids:
        deliver_later(mail_id, actor)
    response = web.page(200, "Check your mail", ASKED.format(email=email, org=org))
    set_browser_cookie(response, browser)
    time.sleep(max(0.0, float(current_app.config.get("SIGN_IN_EMAIL_MIN_SECONDS", 0.3))
                   - (time.monotonic() - started)))
    return response


def set_browser_cookie(response: HttpResponse, browser: str) -> None:
    """Keep `browser`, the id its sign-in links are bound to, in this browser's cookie.

    Path `/` (under BASE_URL's path): both pages that ask for a link (`/` and /login/email) must
    read it back, so that a second ask reuses it and the first link still works in this browser;
    /login/link/ reads it too.
    """
    response.set_cookie(BROWSER_COOKIE, browser, max_age=int(links.LINK_TTL.total_seconds()),
                        path=cookie_path("/"), httponly=True, samesite="Strict", secure=secure_cookies())


def deliver_later(mail_id: str, actor: Actor) -> None:
    """Send the mail in a thread of its own, so that the answer does not wait for SMTP."""
    sender = mail.configured(current_app.config, web.base_url())
    if sender is None:
        return
    thread = threading.Thread(target=mail.deliver, args=(web.db(), sender, actor), kwargs={"ids": [mail_id]},
                              name="sign-in-mail", daemon=True)
    thread.start()
