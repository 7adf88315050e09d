"""The SCIM OAuth token endpoint (`POST /oauth/token`, RFC 6749 section 4.4) answers bad requests
in OAuth's own error format (section 5.2: JSON with `error`), over real HTTP; never a 500.

From a hostile review of the machine ways in: each test's docstring says what the service did.
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from flask import Flask

from audit import Actor
from identity import orgs, scim_credentials, tokens
from identity.db import Database
from tests.live import serving
from tests.statements import statements


@pytest.fixture
def endpoint(app: Flask, db: Database, system: Actor) -> Iterator[tuple[str, str, str]]:
    """The app on 127.0.0.1, and a live OAuth client of an org: (origin, client_id, client_secret)."""
    with db.transaction() as session:
        made = orgs.create_org(session, system, "Tokens", owner_email="owner@tokens.test")
        issued = scim_credentials.create_scim_client(session, system, made.org.id, name="Entra")
    with serving(app, "token-endpoint") as origin:
        yield origin, issued.prefix, issued.secret


def _post(origin: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(origin)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        conn.request("POST", "/oauth/token", body=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded", **headers})
        answer = conn.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        conn.close()


def _basic(raw: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize("raw", [b"\xff\xfe:\xff", b"%(client)s:\xff\xfe", b"\xc3(:x", b"scimcs_a\x00b:secret"],
                         ids=["not-utf8", "secret-not-utf8", "truncated-utf8", "nul-in-client-id"])
def test_basic_credentials_that_are_not_utf8_or_carry_nul_are_invalid_client_not_a_500(
        endpoint: tuple[str, str, str], raw: bytes) -> None:
    """Anybody could make the token endpoint answer 500 (and log a traceback): authlib decodes the
    Basic credentials as UTF-8 and its UnicodeDecodeError escaped as an unhandled error; and on
    PostgreSQL a client id with a NUL inside the base64 (which no HTTP server refuses: it is not in
    the header's bytes) reached the client lookup, whose DataError was a 500. RFC 6749 section 5.2:
    a client whose authentication fails through the Authorization header is a 401 `invalid_client`
    with WWW-Authenticate."""
    origin, client_id, _secret = endpoint
    status, headers, body = _post(origin, b"grant_type=client_credentials", _basic(raw % {b"client": client_id.encode()}))
    assert status == 401, (status, body)
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "invalid_client"
    assert headers.get("www-authenticate", "").lower().startswith("basic")


@pytest.mark.parametrize("body,with_basic", [
    (b"grant_type=client_credentials&client_id=a%00b&client_secret=x", False),  # NUL: the unstorable check's HTML
    (b"grant_type=client_credentials&scope=scim%00", True),
    (b"grant_type=client_credentials&grant_type=password", True),  # repeated parameter: a token was issued
    (b"", True),  # no grant_type at all: unsupported_grant_type, as if one had been named
], ids=["nul-in-client-id", "nul-in-scope", "repeated-grant-type", "missing-grant-type"])
def test_malformed_token_requests_are_invalid_request_in_oauth_json(
        endpoint: tuple[str, str, str], body: bytes, with_basic: bool) -> None:
    """RFC 6749 section 5.2: a request that is missing a required parameter, repeats one (section
    3.2: "parameters MUST NOT be included more than once") or is otherwise malformed is a 400
    `invalid_request`, in JSON. The service answered a NUL with an HTML page, issued a token for a
    request naming two grant types, and called a missing grant_type `unsupported_grant_type`."""
    origin, client_id, secret = endpoint
    status, headers, answer = _post(origin, body, _basic(f"{client_id}:{secret}".encode()) if with_basic else {})
    assert status == 400, (status, answer)
    assert headers["content-type"].startswith("application/json"), answer
    assert json.loads(answer)["error"] == "invalid_request"


def test_an_unknown_or_revoked_client_costs_what_a_wrong_secret_does(app: Flask, db: Database, system: Actor,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The same refusal is not enough if its time differs: authlib looked the client id up alone,
    answered an unknown one at once, and read the row again to compare a known one's secret. Now
    each attempt is one read of the client and one comparison of the secret, whichever it is."""
    with db.transaction() as session:
        made = orgs.create_org(session, system, "Tokens", owner_email="owner@tokens.test")
        live = scim_credentials.create_scim_client(session, system, made.org.id, name="Entra")
        revoked = scim_credentials.create_scim_client(session, system, made.org.id, name="Old")
        scim_credentials.revoke_scim_client(session, system, made.org.id, revoked.prefix)
    compared: list[str] = []
    real_matches = tokens.matches
    monkeypatch.setattr(tokens, "matches", lambda plain, stored: compared.append(plain) or real_matches(plain, stored))
    client, costs, compares = app.test_client(), {}, {}
    for name, client_id in {"wrong secret": live.prefix, "revoked": revoked.prefix,
                            "unknown": live.prefix[:-4] + "ffff"}.items():
        compared.clear()
        with statements(db) as sent:
            answer = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                       "client_secret": f"{name} guess"})
        costs[name] = (answer.status_code, answer.json["error"], answer.json.get("error_description"), list(sent))
        compares[name] = compared[:]
    assert costs["unknown"] == costs["revoked"] == costs["wrong secret"]
    assert costs["unknown"][:2] == (401, "invalid_client") and costs["unknown"][3] == ["SELECT scim_clients"]
    assert compares == {name: [f"{name} guess"] for name in costs}


def test_basic_with_a_client_id_parameter_is_one_method_and_gets_a_token(app: Flask, db: Database,
                                                                         system: Actor) -> None:
    """RFC 6749 2.3 refuses two ways of authenticating (Basic and `client_secret`, review s22); a
    `client_id` parameter beside Basic authenticates nothing, and clients send it."""
    with db.transaction() as session:
        made = orgs.create_org(session, system, "Tokens", owner_email="owner@tokens.test")
        issued = scim_credentials.create_scim_client(session, system, made.org.id, name="Entra")
    answer = app.test_client().post("/oauth/token", auth=(issued.prefix, issued.secret),
                                    data={"grant_type": "client_credentials", "client_id": issued.prefix})
    assert answer.status_code == 200 and answer.json["token_type"] == "Bearer"
