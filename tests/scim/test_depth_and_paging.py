"""Hostile shapes at the SCIM door: nesting beyond a bound, and paging numbers that are not integers.

Each is a 400 in SCIM's own error format, never a 500, and writes nothing; what is within the bound
is kept, and a resource read back can always be sent again (PATCH, PUT) without tripping it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from identity.jsontext import MAX_DEPTH
from tests.factories import counts
from tests.scim.client import ENTERPRISE, GROUP, PATCH, USER, Scim, scim_for

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


def nested(levels: int) -> Any:
    """An array inside an array, `levels` deep (a JSON depth of `levels`)."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Deep")


DEEP = "@@deep@@"


def _deep_bodies(user_id: str, group_id: str) -> list[tuple[str, str, Any]]:
    """(method, path, body) for every SCIM operation that reads a body; DEEP marks where it nests."""
    return [
        ("POST", "/Users", {"schemas": [USER], "userName": "deep@x.test", "x": DEEP}),
        ("PUT", f"/Users/{user_id}", {"schemas": [USER], "userName": "plain@x.test", "x": DEEP}),
        ("PATCH", f"/Users/{user_id}", {"schemas": [PATCH], "Operations": [{"op": "add", "path": "x", "value": DEEP}]}),
        ("POST", "/Groups", {"schemas": [GROUP], "displayName": "Deep", "x": DEEP}),
        ("PUT", f"/Groups/{group_id}", {"schemas": [GROUP], "displayName": "Plain", "x": DEEP}),
        ("PATCH", f"/Groups/{group_id}", {"schemas": [PATCH], "Operations": [{"op": "add", "value": {"x": DEEP}}]}),
        ("POST", "/Bulk", {"schemas": [BULK], "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"userName": "b@x.test", "x": DEEP}}]}),
        ("POST", "/Users/.search", {"schemas": [SEARCH], "filter": DEEP}),
    ]


@pytest.mark.parametrize("levels", [MAX_DEPTH, 100_000])
def test_nesting_beyond_the_bound_is_invalid_syntax_on_every_body(scim: Scim, db: Database, levels: int) -> None:
    """`levels` arrays nest at DEEP, itself at least 2 deep: beyond MAX_DEPTH in every body."""
    user = scim.create_user("plain@x.test")
    group = scim.create_group("Plain")
    before = counts(db)
    for method, path, body in _deep_bodies(user["id"], group["id"]):
        text = json.dumps(body).replace(json.dumps(DEEP), "[" * levels + "]" * levels)
        response = scim.request(method, path, text)
        assert response.status_code == 400, (method, path, response.data[:200])
        assert response.content_type == "application/scim+json", (method, path)
        assert response.json["scimType"] == "invalidSyntax" and response.json["status"] == "400", (method, path)
        assert "nested deeper than" in response.json["detail"]
    assert counts(db) == before


def test_a_resource_nested_to_the_bound_can_be_read_patched_and_sent_back(scim: Scim) -> None:
    body = {"schemas": [USER, ENTERPRISE], "userName": "edge@x.test", "x-edge": nested(MAX_DEPTH - 1),
            ENTERPRISE: {"x-deep": nested(MAX_DEPTH - 2)}}
    created = scim.post("/Users", body)
    assert created.status_code == 201, created.json
    uid = created.json["id"]
    one_deeper = scim.post("/Users", {**body, "userName": "over@x.test", "x-edge": nested(MAX_DEPTH)})
    assert one_deeper.status_code == 400 and one_deeper.json["scimType"] == "invalidSyntax"
    read = scim.get(f"/Users/{uid}")
    assert read.status_code == 200 and read.json["x-edge"] == nested(MAX_DEPTH - 1)
    assert read.json[ENTERPRISE]["x-deep"] == nested(MAX_DEPTH - 2)
    patched = scim.patch(f"/Users/{uid}", [
        {"op": "replace", "path": "displayName", "value": "Edge"},
        {"op": "add", "path": f"{ENTERPRISE}:x-more", "value": nested(MAX_DEPTH - 3)}])
    assert patched.status_code == 200, patched.json
    again = scim.get(f"/Users/{uid}")
    resent = scim.put(f"/Users/{uid}", {k: v for k, v in again.json.items() if k != "meta"})
    assert resent.status_code == 200, resent.json
    assert resent.json[ENTERPRISE]["x-more"] == nested(MAX_DEPTH - 3)
    assert scim.patch(f"/Users/{uid}", [{"op": "replace", "path": "active", "value": False}]).status_code == 200


BAD_NUMBERS = ["abc", "1.5", "1e3", "1_0", "\uff11", " 1", "99999999999999999999", "0x10"]


@pytest.mark.parametrize("name", ["startIndex", "count"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_a_paging_number_that_is_not_an_integer_is_invalid_value(scim: Scim, name: str, value: str) -> None:
    from urllib.parse import quote

    for path in ("/Users", "/Groups"):
        response = scim.get(f"{path}?{name}={quote(value)}")
        assert response.status_code == 400, (path, value, response.data[:200])
        assert response.json["scimType"] == "invalidValue" and response.content_type == "application/scim+json"


@pytest.mark.parametrize("value", [True, 1.5, "1.5", 10**30, [1], {"a": 1}, "\uff12"])
def test_a_search_bodys_paging_number_that_is_not_an_integer_is_invalid_value(scim: Scim, value: Any) -> None:
    for name in ("startIndex", "count"):
        response = scim.post("/Users/.search", {"schemas": [SEARCH], name: value})
        assert response.status_code == 400, (name, value, response.data[:200])
        assert response.json["scimType"] == "invalidValue"


def test_integers_in_every_accepted_form_still_page(scim: Scim) -> None:
    for name in ("a", "b", "c"):
        scim.create_user(f"{name}@x.test")
    assert scim.get("/Users?startIndex=2&count=1").json["Resources"][0]["userName"] == "a@x.test"
    assert scim.get("/Users?startIndex=%2B2&count=%2B1").json["itemsPerPage"] == 1
    assert scim.get("/Users?startIndex=-5&count=-1").json["itemsPerPage"] == 0  # clamped, as RFC 7644 says
    assert scim.get("/Users?startIndex=999999999999999999").json["Resources"] == []
    found = scim.post("/Users/.search", {"schemas": [SEARCH], "startIndex": 3, "count": "1"})
    assert found.status_code == 200 and found.json["startIndex"] == 3 and found.json["itemsPerPage"] == 1
