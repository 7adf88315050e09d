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
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from flask import Response, request

from identity.web.front import StartResponse, WSGIApp

NOT_HERE = b"Not Found: this service is served under "
# An attribute of our own templates whose value is one of the service's paths. Autoescaping writes a
# `"` of any value as `&#34;`, so `name="/` is only ever a template's own attribute, never a value shown.
APP_PATH_ATTRIBUTE = re.compile(r'(\s(?:href|action|formaction|src|data-[a-z-]+-url)=")/(?!/)')


class UnderBasePath:
    """A WSGI app that serves `fallback` under `prefix` (BASE_URL's path, no trailing slash; "" at the
    root): it makes SCRIPT_NAME the prefix, whatever the server set, answers 404 for a path outside
    it, and redirects the prefix itself to the prefix and its slash."""

    def __init__(self, prefix: str, fallback: WSGIApp) -> None:
        self.prefix = prefix
        self.fallback = fallback

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")  # the request's whole path
        if self.prefix and path != self.prefix and not path.startswith(self.prefix + "/"):
            return _answer(start_response, "404 NOT FOUND", NOT_HERE + self.prefix.encode() + b"/\n")
        environ["SCRIPT_NAME"] = self.prefix
        environ["PATH_INFO"] = path = path[len(self.prefix):]
        if not path and self.prefix:
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


def _answer(start_response: StartResponse, status: str, body: bytes,
            headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    """A plain text answer of the prefix's own, before the app."""
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *(headers or [])])
    return [body]


def browser_path(path: str) -> str:
    """The browser's path for the service's own `path` (`/console/teams`): under the request's prefix."""
    return request.script_root + path if path.startswith("/") and not path.startswith("//") else path


def prefixed_location(response: Response) -> Response:
    """Put a redirect's Location (one of the service's own paths) under the prefix; an absolute URL
    (an IdP's, or one built from BASE_URL, which has the prefix already) is left as it is.
    An `after_request` of the app (identity.web.app), so that every redirect of every blueprint gets it."""
    location = response.headers.get("Location")
    if location is not None and request.script_root:
        response.headers["Location"] = browser_path(location)
    return response


def prefixed_html(html: str) -> str:
    """A console page's links, forms, scripts and fetch URLs (identity.web.console.common.render) under the prefix."""
    root = request.script_root
    return APP_PATH_ATTRIBUTE.sub(lambda found: f"{found.group(1)}{root}/", html) if root else html
