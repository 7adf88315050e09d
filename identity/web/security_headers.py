"""Security headers on every response: no framing, a strict Content-Security-Policy, no sniffing,
no Referer.

The pages this service sends (refusals, the sign-in link page, the sign-out pages) use no script,
no style sheet, no image and no font, so the policy allows nothing but submitting their forms to
this service (`form-action 'self'`). A form whose POST is answered with a redirect to the IdP
(sign-out: the IdP's single logout URL) names that URL's origin too, because browsers apply
`form-action` to the redirects that follow a submission. `Referrer-Policy: no-referrer` keeps the
sign-in link's token, which is in its URL, out of the Referer of whatever that page leads to.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from werkzeug.wrappers import Response

CSP = "Content-Security-Policy"


def content_security_policy(form_targets: Iterable[str] = ()) -> str:
    """Return the policy of an HTML page whose forms may also end at `form_targets` (URLs)."""
    origins = sorted({f"{p.scheme}://{p.netloc}" for p in map(urlsplit, form_targets) if p.scheme and p.netloc})
    form_action = " ".join(["'self'", *origins])
    return f"default-src 'none'; base-uri 'none'; form-action {form_action}; frame-ancestors 'none'"


def secure(response: Response) -> Response:
    """Add the headers to `response`, keeping a page's own Content-Security-Policy (after_app_request)."""
    headers = response.headers
    headers.setdefault(CSP, content_security_policy())
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    return response
