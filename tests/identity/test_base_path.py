"""Served under BASE_URL's path on a real HTTP server, as a proxy passing `/identity/...` on unchanged
serves it (identity.web.base_path): the paths answered in front of Flask (the gateway's key check,
the IdPs' user lookup) answer under the prefix themselves, redirects and pages name only paths under
it, and the URLs built from BASE_URL (SCIM `location`, the SAML endpoints) carry the prefix once.
Real app, real server, both databases."""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from flask import Flask, request

from audit import Actor
from identity import gateway, keys, scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from tests.identity.test_wallet_usage import World, world  # noqa: F401  (world: the fixture)
from tests.live import serving

PREFIX = "/identity"


@dataclass
class Served:
    origin: str  # http://127.0.0.1:PORT, the server's root; the service is at origin + PREFIX
    flask_paths: list[str]  # every request that reached Flask's own request handling

    def ask(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.origin)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=headers)
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()


@pytest.fixture
def served(db: Database) -> Iterator[Served]:
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": f"http://127.0.0.1{PREFIX}", "TESTING": True})
    flask_paths: list[str] = []
    _record_flask_requests(app, flask_paths)
    with serving(app, "under-a-path") as origin:
        app.config["BASE_URL"] = origin + PREFIX
        yield Served(origin, flask_paths)


def _record_flask_requests(app: Flask, into: list[str]) -> None:
    app.before_request(lambda: into.append(request.script_root + request.path) and None)


def test_the_key_check_is_answered_in_front_of_flask_under_the_prefix(served: Served, db: Database, system: Actor,
                                                                       acme: NewOrg) -> None:
    with db.transaction() as session:
        credential = gateway.create_credential(session, system, name="gateway").secret
        secret = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                     name="k", scopes=["inference"]).secret
    status, _, body = served.ask("POST", f"{PREFIX}/api/v1/keys/verify", {"key": secret},
                                 Authorization=f"Bearer {credential}")
    assert status == 200 and json.loads(body)["valid"] is True
    assert served.flask_paths == []  # the front answered it: before, its PATH_INFO never matched
    status, _, _ = served.ask("POST", "/api/v1/keys/verify", {"key": secret}, Authorization=f"Bearer {credential}")
    assert status == 404 and served.flask_paths == []  # outside the prefix: not this service


def test_a_usage_record_is_debited_in_front_of_flask_under_the_prefix(served: Served, world: World) -> None:  # noqa: F811
    status, _, _ = served.ask("POST", f"{PREFIX}{world.wallet}/top-ups", {"amount_micros": 1_000, "reference": "p1"},
                              **world.owner)
    assert status == 201
    served.flask_paths.clear()
    status, _, body = served.ask("POST", f"{PREFIX}/api/v1/usage", {
        "key_id": world.member_key_id, "model": "gpt-x", "cost_micros": 100, "request_id": "u1"}, **world.gateway)
    assert status == 200 and json.loads(body)["balance_micros"] == 900
    assert served.flask_paths == []  # identity.web.usage_front answered it


def test_a_scim_lookup_is_answered_in_front_of_flask_under_the_prefix(served: Served, db: Database, system: Actor,
                                                                      acme: NewOrg) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    auth = {"Authorization": f"Bearer {token}"}
    status, headers, body = served.ask("POST", f"{PREFIX}/scim/v2/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "babs@acme.test"}, **auth)
    created = json.loads(body)
    location = f"{served.origin}{PREFIX}/scim/v2/Users/{created['id']}"  # the prefix once, not twice
    assert status == 201 and headers["Location"] == location and created["meta"]["location"] == location
    served.ask("GET", f"{PREFIX}/scim/v2/Users", **auth)  # the token's last-used time saved: lookups need not write
    served.flask_paths.clear()
    query = "filter=" + quote('userName eq "babs@acme.test"')
    status, _, body = served.ask("GET", f"{PREFIX}/scim/v2/Users?{query}", **auth)
    found = json.loads(body)
    assert status == 200 and found["totalResults"] == 1 and found["Resources"][0]["meta"]["location"] == location
    assert served.flask_paths == []  # answered by scim.lookup_front, not by the view


def test_redirects_pages_and_saml_urls_are_under_the_prefix(served: Served, acme: NewOrg) -> None:
    status, headers, _ = served.ask("GET", f"{PREFIX}/console/teams")
    assert status == 303 and headers["Location"] == f"{PREFIX}/"  # not signed in: the sign-in page, under the prefix
    status, _, body = served.ask("GET", f"{PREFIX}/")
    urls = re.findall(r'\s(?:href|action|src|formaction|data-[a-z-]+-url)="(/[^"]*)"', body.decode())
    assert status == 200 and urls and all(url.startswith(f"{PREFIX}/") for url in urls), urls
    status, _, body = served.ask("GET", f"{PREFIX}/static/console.css")
    assert status == 200 and body
    status, _, body = served.ask("GET", f"{PREFIX}/saml/{acme.org.slug}/metadata")
    acs = f'Location="{served.origin}{PREFIX}/saml/{acme.org.slug}/acs"'
    assert status == 200 and acs in body.decode() and f"{PREFIX}{PREFIX}" not in body.decode()
    assert served.ask("GET", f"{PREFIX}/healthz")[0] == 200
    assert served.ask("GET", "/healthz")[0] == 404


def test_the_api_document_names_the_service_under_its_path(served: Served) -> None:
    """A client generated from /openapi.json calls the API where it is served, not at the host's root."""
    status, _, body = served.ask("GET", f"{PREFIX}/openapi.json")
    assert status == 200
    assert json.loads(body)["servers"] == [{"url": served.origin + PREFIX}]


def test_base_url_itself_is_redirected_to_its_slash_with_its_query(served: Served) -> None:
    """BASE_URL as people type it (no slash): a path under the prefix, the query kept, on the real server
    and whoever the Host header names; never Flask's own redirect built from that header."""
    status, headers, _ = served.ask("GET", f"{PREFIX}?next=%2Fconsole", Host="evil.example")
    assert status == 308
    assert headers["Location"] == f"{PREFIX}/?next=%2Fconsole"
    assert served.flask_paths == []
