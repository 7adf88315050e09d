"""The Flask seam the SAML pages share: the blueprint, python3-saml's view of the request, the
session cookie, and plain pages for refusals.

`saml_request` is the one function that turns the Flask request into python3-saml's request
dict; it builds the URL from BASE_URL, never from the Host header, so that Destination and
Recipient are compared with the address the IdP was configured with.
"""

from __future__ import annotations

import datetime as dt
import logging
from html import escape
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, current_app, g, request
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from werkzeug.wrappers import Response as HttpResponse

from identity import sessions
from identity.models import Org
from saml import binding, service
from saml.connection import SpUrls, toolkit_settings
from saml.models import SamlConnection

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


def db() -> Any:
    from identity.app import database

    return database()


def base_url() -> str:
    return str(current_app.config["BASE_URL"]).rstrip("/")


def saml_request() -> dict[str, Any]:
    """Return python3-saml's request dict for the current request, its URL taken from BASE_URL."""
    base = urlsplit(base_url())
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


def lifetime() -> sessions.Lifetime:
    cfg = current_app.config
    return sessions.Lifetime(idle=dt.timedelta(minutes=int(cfg.get("SESSION_IDLE_MINUTES", 60))),
                             absolute=dt.timedelta(hours=int(cfg.get("SESSION_ABSOLUTE_HOURS", 12))))


def page(status: int, title: str, message: str) -> HttpResponse:
    """Return a plain HTML page for a refused or failed step; never a stack trace or message content."""
    body = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title></head><body>"
            f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
            f"<p><small>Request id: {escape(str(g.get('request_id', '')))}</small></p></body></html>")
    return Response(body, status=status, mimetype="text/html", headers={"Cache-Control": "no-store"})


def load(slug: str) -> tuple[Org, SamlConnection] | None:
    with db().reading() as session:
        return service.find_connection(session, slug)


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


def settings(connection: SamlConnection, org: Org, **overrides: Any) -> OneLogin_Saml2_Settings:
    return toolkit_settings(connection, urls(org), **overrides)


def set_session_cookie(response: HttpResponse, token: str) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(sessions.COOKIE, sessions.cookie_value(current_app.config["SECRET_KEY"], token),
                        max_age=int(lifetime().absolute.total_seconds()), path="/", httponly=True,
                        samesite="Lax", secure=base_url().startswith("https://"))


def session_token() -> str | None:
    return sessions.token_of(current_app.config["SECRET_KEY"], request.cookies.get(sessions.COOKIE))


def clear_session_cookie(response: HttpResponse) -> None:
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="Lax",
                           secure=base_url().startswith("https://"))
