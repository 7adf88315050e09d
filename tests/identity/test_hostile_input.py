"""Hostile shapes at the admin API's door: deep nesting in any body, malformed paging cursors.

Each is a 400 problem JSON (RFC 9457) naming what is wrong, never a 500, and writes nothing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import keys
from identity.db import Database
from identity.jsontext import MAX_DEPTH
from identity.orgs import NewOrg
from tests.factories import counts

DEEP = "@@deep@@"
BODIES = [
    ("POST", "/api/v1/orgs/acme/members", {"email": DEEP}),
    ("PATCH", "/api/v1/orgs/acme/members/{owner}", {"role": DEEP}),
    ("POST", "/api/v1/orgs/acme/teams", {"name": DEEP}),
    ("PATCH", "/api/v1/orgs/acme/settings", {"default_role": DEEP}),
    ("POST", "/api/v1/orgs/acme/invitations", {"email": DEEP}),
    ("POST", "/api/v1/invitations/accept", {"token": DEEP}),
    ("POST", "/api/v1/orgs/acme/api-keys", {"scopes": DEEP}),
    ("POST", "/api/v1/orgs/acme/scim-tokens", {"name": DEEP}),
    ("POST", "/api/v1/orgs/acme/group-mappings", {"group_external_id": DEEP}),
]


@pytest.fixture
def auth(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="k", scopes=["admin"])
    return {"Authorization": f"Bearer {key.secret}"}


def _problem(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.data[:300]
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = response.json
    assert body["status"] == status and body["code"] == "invalid_value"
    return body


@pytest.mark.parametrize("levels", [MAX_DEPTH, 100_000])
@pytest.mark.parametrize("method,path,body", BODIES, ids=[f"{m} {p}" for m, p, _ in BODIES])
def test_nesting_beyond_the_bound_is_a_problem_on_every_body(client: FlaskClient, db: Database, acme: NewOrg,
                                                             auth: dict[str, str], method: str, path: str,
                                                             body: Any, levels: int) -> None:
    before = counts(db)
    text = json.dumps(body).replace(json.dumps(DEEP), "[" * levels + "]" * levels)
    response = client.open(path.format(owner=acme.owner.id), method=method, data=text,
                           content_type="application/json", headers=auth)
    assert f"nested deeper than {MAX_DEPTH}" in _problem(response)["detail"]
    assert counts(db) == before


def test_nesting_within_the_bound_is_read(client: FlaskClient, auth: dict[str, str]) -> None:
    """The bound refuses depth, not arrays: a body just within it is read and judged on its content."""
    text = json.dumps({"name": "@"}).replace('"@"', "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))
    response = client.post("/api/v1/orgs/acme/teams", data=text, content_type="application/json", headers=auth)
    assert _problem(response)["detail"] == "name must be a string"


@pytest.mark.parametrize("after", ["garbage", "' OR 1=1 --", "0" * 37, "ABCDEF00-0000-0000-0000-000000000000",
                                   "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_a_members_page_cursor_that_is_not_an_id_is_refused(client: FlaskClient, auth: dict[str, str],
                                                            after: str) -> None:
    response = client.get("/api/v1/orgs/acme/members", query_string={"after": after}, headers=auth)
    assert _problem(response)["field"] == "after"


def test_members_pages_still_follow_their_cursor(client: FlaskClient, db: Database, system: Actor,
                                                 acme: NewOrg, auth: dict[str, str]) -> None:
    for name in ("a", "b"):
        assert client.post("/api/v1/orgs/acme/members", json={"email": f"{name}@acme.test"},
                           headers=auth).status_code == 201
    seen, after = [], ""
    while True:
        page = client.get("/api/v1/orgs/acme/members", query_string={"limit": 1, "after": after}, headers=auth).json
        seen += [m["email"] for m in page["members"]]
        if not page["next"]:
            break
        after = page["next"]
    assert sorted(seen) == ["a@acme.test", "b@acme.test", "owner@acme.test"]
    twice = client.get("/api/v1/orgs/acme/members?after=" + after + "&after=" + after, headers=auth)
    assert _problem(twice)["field"] == "after"


def _cursor(data: Any) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BAD_CURSORS = [
    "!!!not base64!!!", "\u00e9t\u00e9", _cursor("not json"), _cursor([1, 2]), _cursor({"after": 1}),
    _cursor('{"after": 1e400, "filters": {}}'), _cursor({"after": 10**30, "filters": {}}),
    _cursor({"after": -1, "filters": {}}), _cursor({"after": "5", "filters": {}}), _cursor({"after": True, "filters": {}}),
    _cursor({"after": 1.5, "filters": {}}), _cursor({"after": 1, "filters": {"since": 5}}),
    _cursor({"after": 1, "filters": {"actor": {"a": 1}}}), _cursor({"after": 1, "filters": {"action": "user."}}),
    _cursor({"after": 1, "filters": {"action": [1]}}), _cursor({"after": 1, "filters": [["actor", "x"]]}),
    _cursor({"after": 1, "filters": {"actor": "a\x00b"}}), _cursor({"after": 1, "filters": {"nosuch": "x"}}),
    _cursor({"after": 1, "filters": {"since": "yesterday"}}),
    _cursor('{"after": 1, "filters": {"action": ' + "[" * 100_000 + "]" * 100_000 + "}}"),
]


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=range(len(BAD_CURSORS)))
def test_a_malformed_audit_cursor_is_refused(client: FlaskClient, auth: dict[str, str], cursor: str) -> None:
    response = client.get("/api/v1/orgs/acme/audit-events", query_string={"cursor": cursor}, headers=auth)
    assert _problem(response)["field"] in ("cursor", "since")


def test_the_audit_cursor_the_service_gives_still_pages(client: FlaskClient, auth: dict[str, str]) -> None:
    first = client.get("/api/v1/orgs/acme/audit-events", query_string={"limit": 1, "action": "user.,team."},
                       headers=auth)
    assert first.status_code == 200 and first.json["next_cursor"]
    second = client.get("/api/v1/orgs/acme/audit-events", query_string={"cursor": first.json["next_cursor"]},
                        headers=auth)
    assert second.status_code == 200
    assert second.json["events"] and second.json["events"][0]["seq"] > first.json["events"][0]["seq"]
