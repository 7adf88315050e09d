"""Cross-site request forgery defences for the forms that change who is signed in.

Sign-out and the one-time sign-in link are POSTs, and each POST needs two things:

- it comes from this service's own pages: a browser's `Sec-Fetch-Site` is `same-origin` (or
  `none`, typed by the person) and its `Origin`, when sent, is BASE_URL's origin. Under our
  pages' `Referrer-Policy: no-referrer` Chromium sends `Origin: null` even for a same-origin
  form, so `null` decides nothing: Sec-Fetch-Site (sent whatever the referrer policy) and the
  token do;
- its form carries a token that only a page of ours could have put there: an HMAC under
  SECRET_KEY of the form's purpose and of something the attacker's page cannot read or set
  (OWASP's "synchronizer token", stateless). For sign-out that is the session token in the
  session cookie: the token is bound to the session. The sign-in link page has no session yet
  (a login CSRF would sign the victim in as the attacker), so its GET sets a random
  `identity_form` cookie and the token is bound to that.

The SAML ACS and the single logout URL's POST (HTTP-POST binding) are not protected this way: the
IdP posts to them cross-site by design. The ACS's defence is the browser binding (saml.binding);
single logout's is the IdP's signature, our pending LogoutRequest that a LogoutResponse must
answer, and the replay cache (saml.logout_messages, saml.session_views): nothing else is exempt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Protocol
from urllib.parse import urlsplit

FIELD = "csrf_token"
COOKIE = "identity_form"
_DOMAIN = b"identity.form-token\x00"
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def token(secret_key: str, purpose: str, bound_to: str) -> str:
    """Return the form token for `purpose`, bound to `bound_to` (a session token, a form cookie)."""
    digest = hmac.new(secret_key.encode(), _DOMAIN + f"{purpose}\x00{bound_to}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def valid(secret_key: str, purpose: str, bound_to: str | None, presented: str | None) -> bool:
    """Tell whether `presented` is the token of `purpose` bound to `bound_to`."""
    if not bound_to or not presented:
        return False
    return hmac.compare_digest(token(secret_key, purpose, bound_to), presented)


class _Headers(Protocol):
    def get(self, key: str) -> str | None: ...


def same_origin(base_url: str, headers: _Headers) -> bool:
    """Tell whether the request's Fetch Metadata and Origin allow it to come from our own page.

    A header a browser did not send (an older browser, a non-browser client) does not refuse;
    the form token still has to match.
    """
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ALLOWED_FETCH_SITES:
        return False
    origin = headers.get("Origin")
    if origin is None or origin == "null":  # our pages' no-referrer policy makes browsers send "null"
        return True
    base = urlsplit(base_url)
    return origin == f"{base.scheme}://{base.netloc}"


def new_form_cookie() -> str:
    return secrets.token_urlsafe(24)
