"""Signed-in pages: /me, signing out (here and over SAML single logout), and one-time sign-in links."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from flask import Response, g, jsonify, redirect, request
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from werkzeug.wrappers import Response as HttpResponse

from audit import Actor
from audit.log import Target, record
from identity import sessions, users
from identity.errors import DomainError
from identity.models import Org
from identity.service import run
from saml import links, service, web
from saml.web import DEFAULT_LANDING, MESSAGES, bp


@bp.get("/me")
def me() -> HttpResponse | tuple[HttpResponse, int]:
    """Tell who is signed in: id, userName, email, org and roles; 401 when nobody is."""
    with web.db().transaction() as session:
        found = sessions.resolve_session(session, web.session_token(), web.lifetime())
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
    loaded = web.load(slug)
    with web.db().transaction() as session:
        ended = sessions.end_session(session, web.session_token())
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
    """Single logout over HTTP-Redirect: the IdP's signed LogoutRequest, or its LogoutResponse to ours."""
    org, connection = web.connection_of(slug)
    if "SAMLResponse" in request.args:  # the IdP's answer to our LogoutRequest: we had already signed out
        return _signed_out()
    auth = OneLogin_Saml2_Auth(web.saml_request(), web.settings(connection, org, wantMessagesSigned=True))
    try:
        target = auth.process_slo(keep_local_session=True)
    except Exception:  # python3-saml raises bare errors for a missing or unreadable message
        return web.page(400, "Sign-out failed", "The logout message was not readable.")
    if auth.get_errors() or not target:
        return web.page(400, "Sign-out failed", "The logout message was refused.")
    _end_idp_sessions(org, auth)
    response = redirect(target, 302)
    web.clear_session_cookie(response)
    return response


def _end_idp_sessions(org: Org, auth: OneLogin_Saml2_Auth) -> None:
    xml = auth.get_last_request_xml()
    name_id = OneLogin_Saml2_Logout_Request.get_nameid(xml)
    indexes = OneLogin_Saml2_Logout_Request.get_session_indexes(xml)
    with web.db().transaction() as session:
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
    with web.db().reading() as session:
        live = links.link_owner(session, token) is not None
    if not live:
        return web.page(400, "Sign-in failed", MESSAGES["link_invalid"])
    body = ("<!doctype html><html><head><meta charset='utf-8'><title>Sign in</title></head><body>"
            "<form method='post'><button type='submit'>Sign in</button></form></body></html>")
    return Response(body, mimetype="text/html")


@bp.post("/login/link/<token>")
def link_sign_in(token: str) -> HttpResponse:
    """Use a one-time sign-in link (members only when the org does not require SSO; owners always)."""
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
