"""Signed-in pages: /me, signing out (here and over SAML single logout), and one-time sign-in links."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

from flask import current_app, g, jsonify, redirect, request
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from werkzeug.wrappers import Response as HttpResponse

from audit import Actor
from audit.log import Target, record
from identity import sessions, users
from identity.actions import Action
from identity.errors import DomainError
from identity.models import Org
from identity.service import run
from saml import csrf, links, service, web
from saml.web import DEFAULT_LANDING, MESSAGES, bp


@bp.get("/me")
def me() -> HttpResponse | tuple[HttpResponse, int]:
    """Tell who is signed in: id, userName, email, org and roles; 401 when nobody is."""
    token = web.session_token()
    if token is None:  # no session cookie: answered without the database (anonymous requests write nothing)
        return _unauthenticated()
    with web.db().transaction() as session:
        found = sessions.resolve_session(session, token, web.lifetime())
        if found is None:
            return _unauthenticated()
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


def _unauthenticated() -> tuple[HttpResponse, int]:
    return jsonify({"error": "unauthenticated", "message": "nobody is signed in"}), 401


LOGOUT = "logout"  # the sign-out form's purpose (saml.csrf)


@bp.get("/saml/<slug>/logout")
def logout_page(slug: str) -> HttpResponse:
    """Show a Sign out button; a GET signs nobody out (a link or an image on another site could)."""
    token = web.session_token()
    if token is None:
        return _signed_out()
    loaded = web.load(slug)
    idp_slo = [loaded[1].idp_slo_url] if loaded is not None and loaded[1].idp_slo_url else []
    return web.form_page("Sign out", "Sign out of this service?", "Sign out",
                         csrf.token(current_app.config["SECRET_KEY"], LOGOUT, token), form_targets=tuple(idp_slo))


@bp.post("/saml/<slug>/logout")
def logout(slug: str) -> HttpResponse:
    """Sign out here, then at the IdP over HTTP-Redirect when it has a logout endpoint.

    Only from our own sign-out form (saml.csrf: same origin, a token bound to this session).
    """
    token = web.session_token()
    if token is None:  # nobody to sign out: nothing is read or written
        return _signed_out()
    if not web.from_our_page(LOGOUT, token):
        return web.page(403, "Sign-out refused", MESSAGES["csrf"])
    loaded = web.load(slug)
    with web.db().transaction() as session:
        ended = sessions.end_session(session, token)
        if ended is not None:
            _record_logout(session, ended.org_id, ended.user_id, "sp")
    if loaded is None or ended is None or not loaded[1].idp_slo_url or not ended.name_id:
        return _signed_out()
    org, connection = loaded
    auth = OneLogin_Saml2_Auth(web.saml_request(), web.settings(connection, org))
    response = redirect(auth.logout(name_id=ended.name_id, session_index=ended.session_index,
                                    name_id_format=ended.name_id_format, return_to=None), 302)
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
        return web.page(400, "Sign-out failed", "The logout message was refused.")
    if "SAMLResponse" in request.args:  # the IdP's verified answer to our LogoutRequest: signed out already
        return _signed_out()
    if not target:
        return web.page(400, "Sign-out failed", "The logout message was refused.")
    ended_here = _end_idp_sessions(org, auth)
    response = redirect(target, 302)
    if ended_here:  # the cookie goes only when its session was one the IdP named
        web.clear_session_cookie(response)
    return response


def _end_idp_sessions(org: Org, auth: OneLogin_Saml2_Auth) -> bool:
    """End the sessions a verified LogoutRequest names; tell whether this browser's was one of them."""
    xml = auth.get_last_request_xml()
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    token = web.session_token()
    mine = hashlib.sha256(token.encode()).hexdigest() if token else None
    with web.db().transaction() as session:
        ended = sessions.end_idp_sessions(session, org.id, name_id, indexes)
        for row in ended:
            _record_logout(session, org.id, row.user_id, "idp")
    return any(row.id == mine for row in ended)


def _record_logout(session: Any, org_id: str, user_id: str, initiated_by: str) -> None:
    actor = Actor("user", user_id, user_id, org_id=org_id, request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    record(session, actor, Action.SSO_LOGGED_OUT, Target("user", user_id, user_id),
           {"initiated_by": initiated_by}, org_id=org_id)


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
    response.set_cookie(csrf.COOKIE, form_cookie, max_age=int(links.LINK_TTL.total_seconds()), path="/login/link/",
                        httponly=True, samesite="Strict", secure=web.base_url().startswith("https://"))
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
        signed_in = run(web.db(), actor, links.sign_in_with_link, token, lifetime=web.lifetime())
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
    return response
