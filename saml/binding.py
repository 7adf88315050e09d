"""Binding an SP-initiated sign-in to the browser that started it.

Without it, InResponseTo proves only that *somebody* started the sign-in: an attacker can open
`/saml/<org>/login`, sign in at the IdP as themselves, and post the signed response from a page of
theirs into a victim's browser, which is then signed in to the attacker's account (login CSRF, a
session swap). The defence is the one OAuth 2.0 asks of `state` (RFC 6749 section 10.12): bind the
request to the user agent. `/login` adds to a cookie a MAC of the AuthnRequest id under
SECRET_KEY; the ACS accepts a response with InResponseTo only from a browser whose cookie holds
the MAC of that id. Nothing is stored server-side for it, and a MAC names no request id.

One cookie per org holds up to MAX_ENTRIES entries, so that several tabs may sign in at once
while the cookie stays small; the oldest entry makes room for a new one. Because `/login` must
read the cookie to add to it, the cookie's path is the org's `/saml/<org>/` rather than the ACS
path alone; it is HttpOnly and lives as long as a pending request.

The IdP delivers the response with a cross-site top-level POST, which carries only cookies marked
`SameSite=None`, and browsers accept that only with `Secure`. Over https the cookie is
`SameSite=None; Secure`. Over plain http (local development) `Secure` is impossible outside
localhost, so the cookie has no SameSite attribute: Firefox and Safari send it; Chrome treats it
as Lax but still sends it on a top-level POST within 2 minutes of its setting ("Lax+POST"). A
slower sign-in over http is refused and the person starts again; the check itself never relaxes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import Any

from identity import config

COOKIE = "identity_saml_login"
MAX_ENTRIES = 8
MISSING = "browser_binding_missing"  # the browser holds no binding for this org at all
MISMATCH = "browser_binding_mismatch"  # it holds bindings, none of them for this request
_DOMAIN = b"identity.saml-login-binding\x00"


def _mac(secret_key: str, org_id: str, request_id: str) -> str:
    """Return the 128-bit MAC binding `request_id` of `org_id` to a browser, base64url."""
    digest = hmac.new(secret_key.encode(), _DOMAIN + f"{org_id}\x00{request_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _entries(cookie: str | None) -> list[tuple[int, str]]:
    """Parse `issued:mac.issued:mac...` (issued in hex epoch seconds), skipping what is malformed."""
    entries = []
    for part in (cookie or "").split(".")[-MAX_ENTRIES:]:
        issued, _, mac = part.partition(":")
        try:
            entries.append((int(issued, 16), mac))
        except ValueError:
            continue
    return entries


def _value(entries: list[tuple[int, str]]) -> str:
    return ".".join(f"{issued:x}:{mac}" for issued, mac in entries[-MAX_ENTRIES:])


def with_request(secret_key: str, org_id: str, request_id: str, cookie: str | None, now: dt.datetime,
                 ttl: dt.timedelta) -> str:
    """Return the cookie value `cookie` plus a binding for `request_id`, expired entries dropped."""
    live = [(issued, mac) for issued, mac in _entries(cookie) if issued + ttl.total_seconds() > now.timestamp()]
    return _value([*live, (int(now.timestamp()), _mac(secret_key, org_id, request_id))])


def refusal(secret_key: str, org_id: str, request_id: str, cookie: str | None) -> str | None:
    """Return None when `cookie` binds `request_id` to this browser, else the reason to refuse."""
    entries = _entries(cookie)
    if not entries:
        return MISSING
    expected = _mac(secret_key, org_id, request_id)
    if any(hmac.compare_digest(mac, expected) for _issued, mac in entries):
        return None
    return MISMATCH


def without_request(secret_key: str, org_id: str, request_id: str, cookie: str | None) -> str:
    """Return the cookie value with the binding of `request_id` removed (empty: delete the cookie)."""
    expected = _mac(secret_key, org_id, request_id)
    return _value([(issued, mac) for issued, mac in _entries(cookie) if not hmac.compare_digest(mac, expected)])


def cookie_attributes(base_url: str, slug: str, ttl: dt.timedelta) -> dict[str, Any]:
    """Return the cookie's attributes (see the module docstring for why they differ over http)."""
    https = config.is_https(base_url)
    path = config.path_under(base_url, f"/saml/{slug}/")
    return {"path": path, "max_age": int(ttl.total_seconds()), "httponly": True, "secure": https,
            "samesite": "None" if https else None}

