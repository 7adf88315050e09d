"""Bad input at the SCIM door (gaps once left by test_fuzz and test_depth_and_paging).

A lone UTF-16 surrogate in a resource body or a PATCH value (`"\\ud800"`: valid JSON text, not
Unicode text, so neither psycopg nor sqlite3 can encode it) and NUL in a path id (PostgreSQL text
cannot hold it) are a SCIM 400/404 in SCIM's error format, never a 500, and write nothing: one
definition (identity.jsontext.UNSTORABLE) for the filter lexer, bodies, PATCH values, Bulk paths
and every request's path and query (identity.web.unstorable). Each test failed before.
"""

# ruff: noqa: UP031  (JSON text with escapes json.dumps would not write: printf keeps them visible)
from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.factories import counts
from tests.scim.client import GROUP, PATCH, USER, Scim, scim_for

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
LONE = '"\\ud800"'


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Review")


def _scim_error(response: object, *statuses: int) -> None:
    status = response.status_code  # type: ignore[attr-defined]
    assert status in statuses, (status, response.data[:300])  # type: ignore[attr-defined]
    assert response.content_type == "application/scim+json"  # type: ignore[attr-defined]
    body = response.json  # type: ignore[attr-defined]
    assert body["schemas"] == [ERROR] and body["status"] == str(status)


def _bodies(user_id: str, group_id: str) -> list[tuple[str, str, str]]:
    return [
        ("POST", "/Users", '{"schemas": ["%s"], "userName": "a@x.test", "displayName": %s}' % (USER, LONE)),
        ("POST", "/Users", '{"schemas": ["%s"], "userName": "b@x.test", "externalId": %s}' % (USER, LONE)),
        ("POST", "/Users", '{"schemas": ["%s"], "userName": "c@x.test", "name": {"givenName": %s}}' % (USER, LONE)),
        ("POST", "/Users", '{"schemas": ["%s"], "userName": "d@x.test", "title": %s}' % (USER, LONE)),
        ("PUT", f"/Users/{user_id}", '{"schemas": ["%s"], "userName": "u@x.test", "nickName": %s}' % (USER, LONE)),
        ("PATCH", f"/Users/{user_id}",
         '{"schemas": ["%s"], "Operations": [{"op": "replace", "path": "title", "value": %s}]}' % (PATCH, LONE)),
        ("POST", "/Groups", '{"schemas": ["%s"], "displayName": %s}' % (GROUP, LONE)),
        ("POST", "/Groups", '{"schemas": ["%s"], "displayName": "g2", "externalId": %s}' % (GROUP, LONE)),
        ("POST", "/Groups", '{"schemas": ["%s"], "displayName": "g3", "members": [{"value": %s}]}' % (GROUP, LONE)),
        ("PATCH", f"/Groups/{group_id}", '{"schemas": ["%s"], "Operations": [{"op": "add", "path": "members", '
                                         '"value": [{"value": %s}]}]}' % (PATCH, LONE)),
    ]


@pytest.mark.parametrize("index", range(len(_bodies("u", "g"))),
                         ids=[f"{m} {p.split('/')[1]} {b[60:110]}" for m, p, b in _bodies("u", "g")])
def test_a_lone_surrogate_in_a_resource_body_is_a_scim_400(scim: Scim, db: Database, index: int) -> None:
    """displayName, externalId, name.givenName, group names and member values: a 500; title and
    nickName: stored, and served back as `"\\ud800"`, which strict JSON readers refuse."""
    user = scim.create_user("u@x.test")
    group = scim.create_group("G", [user["id"]])
    method, path, body = _bodies(user["id"], group["id"])[index]
    before = counts(db)
    _scim_error(scim.request(method, path, body), 400)
    assert counts(db) == before


def test_a_lone_surrogate_in_a_bulk_path_is_a_scim_error(scim: Scim, db: Database) -> None:
    before = counts(db)
    response = scim.post("/Bulk", '{"schemas": ["%s"], "Operations": [{"method": "DELETE", "path": "/Users/\\ud800"}]}'
                         % BULK)
    assert response.status_code < 500, response.data[:200]
    assert counts(db) == before


@pytest.mark.parametrize("method,path", [("GET", "/Users/%00"), ("PUT", "/Users/%00"), ("PATCH", "/Users/%00"),
                                         ("DELETE", "/Users/%00"), ("GET", "/Groups/a%00b"), ("PUT", "/Groups/a%00b"),
                                         ("PATCH", "/Groups/a%00b"), ("DELETE", "/Groups/a%00b")])
def test_nul_in_a_path_id_is_a_scim_404(scim: Scim, db: Database, method: str, path: str) -> None:
    """SQLite answers 404 "no user '\\x00' in this org"; PostgreSQL fails binding the id (a 500)."""
    bodies = {"PUT": {"schemas": [USER if "Users" in path else GROUP], "userName": "x@x.test", "displayName": "X"},
              "PATCH": {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Y"}]}}
    before = counts(db)
    _scim_error(scim.request(method, path, bodies.get(method)), 400, 404)
    assert counts(db) == before


def test_nul_in_a_bulk_operation_path_is_a_scim_error(scim: Scim, db: Database) -> None:
    """The same NUL id inside /Bulk: the whole Bulk request becomes a 500 on PostgreSQL."""
    response = scim.post("/Bulk", {"schemas": [BULK], "Operations": [{"method": "DELETE", "path": "/Users/\x00"}]})
    assert response.status_code == 200, response.data[:200]
    assert response.json["Operations"][0]["status"] in ("400", "404")
