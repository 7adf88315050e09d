"""The service served under BASE_URL's path (a proxy passing `/identity/...` on unchanged): the one
place that knows the prefix (README, BASE_URL).

Inside, every part of the app speaks the service's own paths (`/console/teams`, `/api/v1/keys/verify`):
its routes, the paths answered in front of Flask (identity.web.front), the pages' links and forms, the
redirects. The prefix is taken off on the way in (`UnderBasePath`, around every part that reads the
path, as WSGI's SCRIPT_NAME) and put on on the way out, in the two places a path leaves for the
browser: a redirect's Location (`prefixed_location`) and a console page's URL attributes
(`prefixed_html`). Cookies follow the same path (identity.config.path_under).

BASE_URL alone says where the service is. A server's SCRIPT_NAME is put back on the path and the
prefix taken off again: gunicorn sets it from its `SCRIPT_NAME` environment variable (the prefix:
no change) but also from a `SCRIPT_NAME` request header of any client in `forwarded_allow_ips`
(127.0.0.1 by default), which made `/x/identity/` the service's page with `SCRIPT_NAME: /x`, and at
the root put the header's path into every link and redirect.

Two spellings of one prefix: BASE_URL's, as the browser sends it (`/identit%C3%A9`, percent-encoded
UTF-8: identity.config.checked_base_url encodes what an operator typed as `/identité`), which is put on
whatever leaves; and WSGI's, with which PATH_INFO and SCRIPT_NAME arrive decoded, one latin-1 character
a byte (`/identitÃ©`, `wsgi_form`), which is compared and taken off on the way in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from flask import Response, request

from identity.web.front import StartResponse, WSGIApp

NOT_HERE = b"Not Found: this service is served under "
# The environ key of the prefix as the browser spells it (BASE_URL's, percent-encoded), set by
# UnderBasePath: Flask's `request.script_root` is SCRIPT_NAME decoded (`/id p`), not a URL's path.
BROWSER_PREFIX = "identity.base_path"
# An attribute of our own templates whose value is one of the service's paths. Autoescaping writes a
# `"` of any value as `&#34;`, so `name="/` is only ever a template's own attribute, never a value shown.
APP_PATH_ATTRIBUTE = re.compile(r'(\s(?:href|action|formaction|src|data-[a-z-]+-url)=")/(?!/)')


class UnderBasePath:
    """A WSGI app that serves `fallback` under `prefix` (BASE_URL's path, no trailing slash; "" at the
    root): it makes SCRIPT_NAME the prefix, whatever the server set, answers 404 for a path outside
    it, and redirects the prefix itself to the prefix and its slash."""

    def __init__(self, prefix: str, fallback: WSGIApp) -> None:
        self.prefix = prefix  # BASE_URL's, percent-encoded: what leaves
        self.wsgi_prefix = wsgi_form(prefix)  # PATH_INFO's and SCRIPT_NAME's, decoded: what arrives
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")  # the request's whole path, decoded
        prefix = self.wsgi_prefix
        if prefix and path != prefix and not path.startswith(prefix + "/"):
            return _answer(start_response, "404 NOT FOUND", NOT_HERE + self.prefix.encode() + b"/\n")
        environ["SCRIPT_NAME"] = prefix
        environ["PATH_INFO"] = path = path[len(prefix):]
        environ[BROWSER_PREFIX] = self.prefix
        if not path and prefix:
            return self._to_slash(environ, start_response)
        return self.fallback(environ, start_response)

    def _to_slash(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer BASE_URL itself (`/identity`, as people type it) with a redirect to `/identity/`.

        Werkzeug's own (a 308 for an empty PATH_INFO) is an absolute URL built from the request's
        scheme and Host header: behind a TLS proxy an http:// URL, and a Host header's origin (a
        cache poisoned for everyone); a path under the prefix is BASE_URL's, whatever the request said."""
        query = environ.get("QUERY_STRING", "")
        location = self.prefix + "/" + (f"?{query}" if query else "")
        return _answer(start_response, "308 PERMANENT REDIRECT", b"Redirecting to " + self.prefix.encode() + b"/\n",
                       [("Location", location)])


def wsgi_form(path: str) -> str:
    """`path` (percent-encoded) as a WSGI server hands it over: decoded, each byte one latin-1
    character (PEP 3333), as `/id p` for `/id%20p` and `/identitÃ©` for `/identit%C3%A9`."""
    return unquote_to_bytes(path).decode("latin-1")


def _answer(start_response: StartResponse, status: str, body: bytes,
            headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    """A plain text answer of the prefix's own, before the app."""
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def _root() -> str:
    """The request's prefix as the browser spells it; empty when served at the root."""
    return str(request.environ.get(BROWSER_PREFIX, ""))


def browser_path(path: str) -> str:
    """The browser's path for the service's own `path` (`/console/teams`): under the request's prefix."""
    return _root() + path if path.startswith("/") and not path.startswith("//") else path


def prefixed_location(response: Response) -> Response:
    """Put a redirect's Location (one of the service's own paths) under the prefix; an absolute URL
    (an IdP's, or one built from BASE_URL, which has the prefix already) is left as it is.
    An `after_request` of the app (identity.web.app), so that every redirect of every blueprint gets it."""
    location = response.headers.get("Location")
    if location is not None and _root():
        response.headers["Location"] = browser_path(location)
    return response


def prefixed_html(html: str) -> str:
    """A console page's links, forms, scripts and fetch URLs (identity.web.console.common.render) under the prefix."""
    root = _root()
    return APP_PATH_ATTRIBUTE.sub(lambda found: f"{found.group(1)}{root}/", html) if root else html
