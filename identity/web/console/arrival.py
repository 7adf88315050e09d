"""Arrival: `/`, the sign-in page, and `/console` itself.

A person types their work email or their org's slug. An org with SSO (by slug, or by the email's
domain: saml.discovery) sends them to its SSO; otherwise a one-time sign-in link is mailed
(saml.links, delivered as /login/email delivers it), and the answer is the same whether or not
the address exists. Going on to the IdP is a link (followed by a script when there is one): the
page's `form-action 'self'` would otherwise block the redirect chain that ends at the IdP.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, g, redirect, request
from werkzeug.wrappers import Response

from audit import Actor
from identity.service import run
from identity.web.console.common import field, render, signed_in_caller
from identity.web.context import cookie_path, database, secure_cookies
from saml import csrf, discovery, links, web
from saml.session_views import BROWSER_COOKIE, deliver_later, link_limits, set_browser_cookie
from saml.views import client_address

bp = Blueprint("console_arrival", __name__)
LANDING = "/console/teams"
PURPOSE = "console-sign-in"  # the form token's purpose (saml.csrf), bound to FORM_COOKIE
FORM_COOKIE = "identity_sign_in_form"
WHO_MISSING = "Enter your work email or your organization's short name."


def _form_page(*, step: str = "who", org: str = "", errors: dict[str, str] | None = None,
               status: int = 200) -> Response:
    """The sign-in form (step `who`, or `email` for an org without SSO), its token bound to a cookie it sets."""
    cookie = request.cookies.get(FORM_COOKIE) or csrf.new_form_cookie()
    token = csrf.token(current_app.config["SECRET_KEY"], PURPOSE, cookie)
    response = render("console/sign_in.html", status=status, title="Sign in", csrf_token=token, step=step, org=org,
                      errors=errors)
    response.set_cookie(FORM_COOKIE, cookie, max_age=3600, path=cookie_path("/"), httponly=True, samesite="Strict",
                        secure=secure_cookies())
    return response


@bp.get("/")
def sign_in_page() -> Response:
    """Show the sign-in page; a signed-in person goes straight to the console."""
    if signed_in_caller() is not None:
        return redirect(LANDING, 303)
    return _form_page()


@bp.post("/")
def sign_in() -> Response:
    """Send the person to their org's SSO, ask for their email, or mail them a one-time link."""
    if not (csrf.same_origin(str(current_app.config["BASE_URL"]), request.headers) and csrf.valid(
            current_app.config["SECRET_KEY"], PURPOSE, request.cookies.get(FORM_COOKIE), field(csrf.FIELD))):
        return render("console/refused.html", status=403, title="Refused",
                      message="This form did not come from this page. Open the sign-in page again.")
    org, email, who = field("org"), field("email"), field("who")
    if org:
        if "@" not in email or len(email) > 320:
            return _form_page(step="email", org=org, errors={"email": "Enter your work email address."}, status=400)
        return _mail_links([org], email)
    if not who or len(who) > 320:
        return _form_page(errors={"who": WHO_MISSING}, status=400)
    with database().reading() as session:
        slug = discovery.sso_slug(session, who)
        orgs = discovery.orgs_of_address(session, who) if slug is None and "@" in who else []
    if slug is not None:
        return render("console/continue_sso.html", title="Continue to single sign-on", slug=slug)
    if "@" in who:
        return _mail_links(orgs, who)  # none: nobody gets a mail, and the asking is counted the same
    return _form_page(step="email", org=who)


def _mail_links(slugs: list[str], email: str) -> Response:
    """Queue a sign-in link to `email` in each org (saml.links decides who gets one, and counts the ask
    once, whatever the orgs); answer the same in any case.

    The answer waits until SIGN_IN_EMAIL_MIN_SECONDS have passed, as /login/email's does, so that
    its timing does not tell whether a mail went out.
    """
    started = time.monotonic()
    browser = request.cookies.get(BROWSER_COOKIE) or csrf.new_form_cookie()
    actor = Actor("system", "sign-in-email", "sign-in link by email", request_id=g.get("request_id"),
                  ip=request.remote_addr, user_agent=request.user_agent.string)
    base_url = str(current_app.config["BASE_URL"]).rstrip("/")
    try:
        mail_ids = run(database(), actor, links.request_sign_in_links, slugs, email, browser=browser,
                       client_address=client_address(), base_url=base_url, limits=link_limits(),
                       device=web.presented_device())
    except links.TooManyRequests:
        return _form_page(errors={"who": "Too many sign-in links were asked for. Wait a few minutes."}, status=429)
    for mail_id in mail_ids:
        deliver_later(mail_id, actor)
    response = render("console/check_mail.html", title="Check your mail", email=email)
    set_browser_cookie(response, browser)
    time.sleep(max(0.0, float(current_app.config.get("SIGN_IN_EMAIL_MIN_SECONDS", 0.3))
                   - (time.monotonic() - started)))
    return response


@bp.get("/console")
@bp.get("/console/")
def console_home() -> Response:
    return redirect(LANDING, 303)
