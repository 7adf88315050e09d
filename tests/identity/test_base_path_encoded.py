"""BASE_URL whose path a browser sends percent-encoded: a space (`/id%20p`) and a non-ASCII letter
(`/identité`, sent as `/identit%C3%A9`, its UTF-8). A WSGI server hands the app PATH_INFO decoded
(each byte a latin-1 character), while BASE_URL holds the encoded form: identity.web.base_path
compares the decoded forms and prefixes what leaves with the encoded one. Real app, real HTTP
server (tests/identity/test_base_path.py for a plain path), both databases."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from audit import Actor
from identity import config, gateway, keys, scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from tests.identity.test_base_path import Served, _record_flask_requests
from tests.live import serving

# As BASE_URL spells them (the browser's form), and a BASE_URL given the letter itself.
PREFIXES = {"space": ("/id%20p", "/id%20p"), "utf-8": ("/identit%C3%A9", "/identit%C3%A9"),
            "utf-8 as typed": ("/identité", "/identit%C3%A9")}


@pytest.fixture(params=list(PREFIXES))
def encoded(request: pytest.FixtureRequest, db: Database) -> Iterator[tuple[Served, str]]:
    """The service served under BASE_URL's path, and that path as the browser sends it."""
    given, sent = PREFIXES[request.param]
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": f"http://127.0.0.1{given}", "TESTING": True})
    flask_paths: list[str] = []
    _record_flask_requests(app, flask_paths)
    with serving(app, "under-an-encoded-path") as origin:
        app.config["BASE_URL"] = config.checked_base_url(origin + given)  # as the app reads BASE_URL at start
        yield Served(origin, flask_paths), sent


def test_the_sign_in_page_and_a_redirect_are_under_the_encoded_path(encoded: tuple[Served, str]) -> None:
    served, prefix = encoded
    status, headers, _ = served.ask("GET", f"{prefix}/console/teams")
    assert status == 303 and headers["Location"] == f"{prefix}/", headers  # not signed in: the sign-in page
    status, _, body = served.ask("GET", f"{prefix}/")
    urls = re.findall(r'\s(?:href|action|src|formaction|data-[a-z-]+-url)="(/[^"]*)"', body.decode())
    assert status == 200 and urls and all(url.startswith(f"{prefix}/") for url in urls), urls
    assert served.ask("GET", f"{prefix}/static/console.css")[0] == 200
    status, headers, _ = served.ask("GET", prefix)  # BASE_URL as typed: to its slash, in the browser's form
    assert status == 308 and headers["Location"] == f"{prefix}/", headers
    assert served.ask("GET", "/healthz")[0] == 404


def test_scim_and_the_key_check_answer_under_the_encoded_path(encoded: tuple[Served, str], db: Database,
                                                              system: Actor, acme: NewOrg) -> None:
    served, prefix = encoded
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
        credential = gateway.create_credential(session, system, name="gateway").secret
        secret = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                     name="k", scopes=["inference"]).secret
    auth = {"Authorization": f"Bearer {token}"}
    status, headers, body = served.ask("POST", f"{prefix}/scim/v2/Users", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "babs@acme.test"}, **auth)
    created = json.loads(body)
    location = f"{served.origin}{prefix}/scim/v2/Users/{created['id']}"
    assert status == 201 and headers["Location"] == location and created["meta"]["location"] == location, body
    served.ask("GET", f"{prefix}/scim/v2/Users", **auth)  # the token's last-used time saved: lookups need not write
    served.flask_paths.clear()
    query = "filter=" + quote('userName eq "babs@acme.test"')
    status, _, body = served.ask("GET", f"{prefix}/scim/v2/Users?{query}", **auth)
    found = json.loads(body)
    assert status == 200 and found["Resources"][0]["meta"]["location"] == location, body
    assert served.flask_paths == []  # answered by scim.lookup_front
    status, _, body = served.ask("POST", f"{prefix}/api/v1/keys/verify", {"key": secret},
                                 Authorization=f"Bearer {credential}")
    assert status == 200 and json.loads(body)["valid"] is True, body
    assert served.flask_paths == []  # answered by the key check's front
