"""A bearer credential carrying a NUL is refused as any wrong credential is: a 401 in the protocol's own
format, on every database, on any WSGI server (DESIGN.md 2: `wsgi.py` for gunicorn / any WSGI
server; gunicorn refuses control characters in headers itself, Werkzeug's server and others pass
them on). Over real HTTP (Werkzeug's server, tests.live).

From a hostile review of the machine ways in: the docstring says what the service did.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask

from identity import tokens
from identity.orgs import NewOrg
from tests.live import serving

WAYS_IN = [("GET", "/scim/v2/Users", "scim_012345\x006789ab_secret", "application/scim+json"),
           ("GET", "/api/v1/orgs/acme/members", "key_012345\x006789ab_secret", "application/problem+json"),
           ("GET", "/api/v1/key", "key_012345\x006789ab_secret", "application/problem+json"),
           ("POST", "/api/v1/keys/verify", "gw_012345\x006789ab_secret", "application/problem+json"),
           ("POST", "/api/v1/usage", "gw_012345\x006789ab_secret", "application/problem+json")]


@pytest.fixture
def origin(app: Flask, acme: NewOrg) -> Iterator[str]:
    with serving(app, "nul-credentials") as served:
        yield served


@pytest.mark.parametrize("method,path,credential,media_type", WAYS_IN,
                         ids=["scim", "admin-api", "whoami", "key-check", "usage"])
def test_a_credential_with_a_nul_is_a_401(origin: str, method: str, path: str, credential: str,
                                          media_type: str) -> None:
    """On PostgreSQL a prefix with a NUL (`scim_012345\\x006789ab_...`) went into the lookup as it came, and PostgreSQL's
    refusal of a NUL in text (DataError) was a 500 on SCIM, the admin API, the key check and
    `POST /api/v1/usage`."""
    parts = urlsplit(origin)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    body = b'{"key": "key_0123456789ab_secret"}' if method == "POST" else b""
    try:
        conn.putrequest(method, path)
        conn.putheader("Authorization", f"Bearer {credential}")  # http.client refuses only CR and LF
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        answer = conn.getresponse()
        answer.read()
    finally:
        conn.close()
    assert answer.status == 401, answer.status
    assert (answer.getheader("Content-Type") or "").startswith(media_type)


@pytest.mark.parametrize("presented", ["key_012345\x006789ab_secret", "key_0123456789AB_secret", "key_01234_secret",
                                       "key_0123456789ab_", "key_0123456789ab_sec\x00ret", "_0123456789ab_secret",
                                       "key_0123456789ab_secret\n", "Key_0123456789ab_secret"])
def test_only_the_generated_form_reaches_a_lookup(presented: str) -> None:
    assert tokens.split_prefix(presented) is None


def test_every_generated_secret_has_its_prefix_read_back() -> None:
    for kind in ("scim", "scimcs", "key", "inv", "gw"):
        made = tokens.generate(kind)
        assert tokens.split_prefix(made.plaintext) == made.prefix
