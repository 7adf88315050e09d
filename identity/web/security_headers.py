"""Security headers on every response: no framing, a strict Content-Security-Policy, no sniffing,
no Referer.

The pages this service sends (refusals, the sign-in link page, the sign-out pages) use no script,
no style sheet, no image and no font, so the policy allows nothing but submitting their forms to
this service (`form-action 'self'`). A form whose POST is answered with a redirect to the IdP
(sign-out: the IdP's single logout URL) names that URL's origin too, because browsers apply
`form-action` to the redirects that follow a submission. `Referrer-Policy: no-referrer` keeps the
sign-in link's token, which is in its URL, out of the Referer of whatever that page leads to.

When BASE_URL is https, every response also carries `Strict-Transport-Security` (`StrictTransport`,
around the whole app, so that the answers given in front of Flask carry it too): a browser that
saw it once never again speaks plain http to this host, so a link typed or followed as http://,
or a network attacker's downgrade, cannot expose the session and binding cookies or the sign-in
pages. One year, the usual value; no `includeSubDomains` (nor `preload`): the service knows
its own host only, and the subdomains of that host may be other services of the operator, still
on http, that a header of ours must not cut off (an operator who wants them covered sets the
header at the proxy, and this one then leaves it alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Response

CSP = "Content-Security-Policy"
HSTS = "Strict-Transport-Security"
HSTS_VALUE = "max-age=31536000"  # a year


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


class StrictTransport:
    """A WSGI app that adds Strict-Transport-Security to every answer of `wsgi_app` (the whole
    app, the paths answered in front of Flask included), unless the answer has its own.

    Installed only when BASE_URL is https (identity.config.is_https): browsers ignore the header on
    an http answer (RFC 6797 8.1), and behind a proxy that ends TLS the app itself speaks http."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]]) -> None:
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def with_hsts(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if not any(name.lower() == "strict-transport-security" for name, _ in headers):
                headers.append((HSTS, HSTS_VALUE))
            return start_response(status, headers, *exc_info)
        return self.wsgi_app(environ, with_hsts)
