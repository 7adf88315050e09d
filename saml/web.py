"""The Flask seam the SAML pages share: the blueprint, python3-saml's view of the request, the
session cookie, and plain pages for refusals.

`saml_request` is the one function that turns the Flask request into python3-saml's request
dict; it builds the URL from BASE_URL, never from the Host header, so that Destination and
Recipient are compared with the address the IdP was configured with.
"""

from __future__ import annotations

import logging
import os
from html import escape
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, g, request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from sqlalchemy import update
from werkzeug.wrappers import Response as HttpResponse

from audit import clock
from identity import config, sessions
from identity.model_base import max_length
from identity.models import Org, Team
from identity.web import cookies
from identity.web import security_headers as headers
from identity.web.context import cookie_path, database, secure_cookies
from saml import binding, configuration, csrf, device_cookies, sp_keys
from saml.connection import SpUrls, toolkit_settings
from saml.models import SamlConnection
from saml.refusals import RefusalCounter

bp = Blueprint("saml", __name__)
log = logging.getLogger("identity.saml")

DEFAULT_LANDING = "/console/teams"  # the web console (identity.web.console); /me stays JSON
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
    "link_other_browser": "This sign-in link works only in the browser where it was asked for. Open it there, "
                          "or ask for a new one from this browser.",
    "concurrent_sign_in": "Another sign-in for this account was in progress. Please sign in again.",
    "connection_changed": "Single sign-on was being reconfigured. Please sign in again.",
    "name_id_mismatch": "The account for this email is already linked to another identity at your identity "
                        "provider. Ask an administrator of this organization for help.",
    "ambiguous_user": "Your identity provider named two different accounts of this organization for you. "
                      "Ask an administrator of this organization for help.",
    "invalid_value": "Your identity provider sent a name or email address with characters that are not allowed.",
    "value_too_long": "Your identity provider sent a name, identifier or group name longer than this service "
                      f"keeps (a group that becomes a team: a team's name has at most {max_length(Team.name)} "
                      "characters). Ask an administrator of this organization for help.",
    "too_many_pending_sign_ins": "Too many sign-ins were started from your network in the last minutes. "
                                 "Please wait a few minutes and try again.",
    "csrf": "This form did not come from this service's own page, or the page is too old. "
            "Open the page again and use its button.",
    binding.MISSING: NOT_THIS_BROWSER,
    binding.MISMATCH: NOT_THIS_BROWSER,
}


def db() -> Any:
    return database()


def base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def saml_request() -> dict[str, Any]:
    """Return python3-saml's request dict for the current request, its URL taken from BASE_URL."""
    base = urlsplit(base_url())
    return {
        "https": "on" if config.is_https(base_url()) else "off",
        "http_host": base.netloc,
        "script_name": base.path.rstrip("/") + request.path,
        "get_data": request.args.to_dict(),
        "post_data": request.form.to_dict(),
        "query_string": request.query_string.decode("latin-1"),
        # Verify redirect-binding signatures over the query exactly as sent (Entra encodes lowercase).
        "validate_signature_from_qs": True,
    }


def lifetime() -> sessions.Lifetime:
    return cookies.lifetime(current_app.config)


# A language, a viewport and a main landmark, as the console's pages have (axe: html-has-lang, region).
_HEAD = ("<!doctype html><html lang='en'><head><meta charset='utf-8'>"
         "<meta name='viewport' content='width=device-width, initial-scale=1'>")


def page(status: int, title: str, message: str) -> HttpResponse:
    """Return a plain HTML page for a refused or failed step; never a stack trace or message content."""
    body = (f"{_HEAD}<title>{escape(title)}</title></head><body><main>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
            f"<p><small>Request id: {escape(str(g.get('request_id', '')))}</small></p></main></body></html>")
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})


def form_page(title: str, message: str, button: str, csrf_token: str, *,
              form_targets: tuple[str, ...] = ()) -> HttpResponse:
    """Return a page whose one button POSTs to this same URL with `csrf_token` (saml.csrf).

    `form_targets`: URLs the POST's answer may redirect to (identity.web.security_headers: form-action).
    """
    body = (f"{_HEAD}<title>{escape(title)}</title></head><body><main>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p><form method='post'>"
            f"<input type='hidden' name='{csrf.FIELD}' value='{escape(csrf_token, quote=True)}'>"
            f"<button type='submit'>{escape(button)}</button></form></main></body></html>")
    return Response(body, mimetype="text/html", headers={
        "Cache-Control": "no-store", headers.CSP: headers.content_security_policy(form_targets)})


def from_our_page(purpose: str, bound_to: str | None) -> bool:
    """Tell whether the current POST comes from our own form for `purpose` (saml.csrf)."""
    return csrf.same_origin(base_url(), request.headers) and csrf.valid(
        current_app.config["SECRET_KEY"], purpose, bound_to, request.form.get(csrf.FIELD))


def refusal_counter() -> RefusalCounter:
    counter: RefusalCounter = current_app.extensions.setdefault("saml.refusals", RefusalCounter())
    return counter


def load(slug: str) -> tuple[Org, SamlConnection] | None:
    with db().reading() as session:
        return configuration.find_connection(session, slug)


def not_configured() -> HttpResponse:
    return page(404, "Single sign-on is not available", "No SAML single sign-on is configured here.")


def connection_of(slug: str) -> tuple[Org, SamlConnection]:
    """The org and its connection, or end the request with the not-configured page."""
    loaded = load(slug)
    if loaded is None:
        abort(not_configured())
    return loaded


def urls(org: Org) -> SpUrls:
    return SpUrls.of(base_url(), org.slug)


def key_secrets() -> tuple[str, ...]:
    """SECRET_KEY, then the previous ones that may still open a sealed SP key (saml.sp_keys)."""
    cfg = current_app.config
    previous = cfg.get("SECRET_KEY_PREVIOUS") or os.environ.get("SECRET_KEY_PREVIOUS")
    return (str(cfg["SECRET_KEY"]), *sp_keys.previous_secrets(previous))


def settings(connection: SamlConnection, org: Org, **overrides: Any) -> OneLogin_Saml2_Settings:
    secrets = key_secrets()
    if not sp_keys.sealed_under(secrets[0], connection.sp_key_pem):
        seal_stored_key(connection, secrets)
    return toolkit_settings(connection, urls(org), secrets, **overrides)


def seal_stored_key(connection: SamlConnection, secrets: tuple[str, ...]) -> None:
    """Seal a plaintext SP key (from before migration 0013c) or one sealed under a previous
    SECRET_KEY, at its first use; once per org, as the row then says it is done.

    Compared and swapped: a process that did it already leaves nothing to do for the others.
    """
    sealed = sp_keys.reseal(secrets, connection.org_id, connection.sp_key_pem)
    if sealed is None:
        return
    with db().transaction() as session:
        session.execute(update(SamlConnection).where(SamlConnection.org_id == connection.org_id,
                                                     SamlConnection.sp_key_pem == connection.sp_key_pem)
                        .values(sp_key_pem=sealed))
    connection.sp_key_pem = sealed
    log.info("sealed the SP private key under the current SECRET_KEY", extra={"org_id": connection.org_id})


def set_session_cookie(response: HttpResponse, token: str) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(cookies.COOKIE, cookies.cookie_value(current_app.config["SECRET_KEY"], token),
                        max_age=int(lifetime().absolute.total_seconds()), path=cookie_path("/"), httponly=True,
                        samesite="Lax", secure=secure_cookies())


def session_token() -> str | None:
    return cookies.token_of(current_app.config["SECRET_KEY"], request.cookies.get(cookies.COOKIE))


def clear_session_cookie(response: HttpResponse) -> None:
    response.delete_cookie(cookies.COOKIE, path=cookie_path("/"), httponly=True, samesite="Lax",
                           secure=secure_cookies())


def presented_device() -> device_cookies.Presented:
    """This request's device cookie, with the keys it may be signed with (SECRET_KEY, then SECRET_KEY_PREVIOUS)."""
    return device_cookies.Presented(request.cookies.get(device_cookies.COOKIE), key_secrets())


def set_device_cookie(response: HttpResponse, members: list[device_cookies.Member]) -> None:
    """Mark this browser as one that signed in as `members` (saml.device_cookies), anew at each sign-in.

    Path `/` (under BASE_URL's path): both pages that ask for a link read it. SameSite=Lax, as the
    session cookie: a SAML sign-in sets it on the IdP's cross-site POST. None when no member.
    """
    if not members:
        return
    value = device_cookies.issue(current_app.config["SECRET_KEY"], members, clock.now())
    response.set_cookie(device_cookies.COOKIE, value, max_age=int(device_cookies.LIFETIME.total_seconds()),
                        path=cookie_path("/"), httponly=True, samesite="Lax", secure=secure_cookies())
