"""Tenant isolation on every SCIM endpoint; /Bulk with bulkId references and failOnErrors."""

from __future__ import annotations

import json

import pytest
from flask.testing import FlaskClient
from sqlalchemy import event

from audit import Actor
from identity.db import Database
from tests.factories import counts
from tests.scim.client import GROUP, PATCH, USER, Scim, scim_for


@pytest.fixture
def two(db: Database, client: FlaskClient, system: Actor) -> tuple[Scim, Scim, dict[str, str]]:
    acme, globex = scim_for(db, client, system, "Acme"), scim_for(db, client, system, "Globex")
    uid = globex.create_user("secret@globex.test")["id"]
    gid = globex.create_group("Globex Secret", [uid])["id"]
    return acme, globex, {"user": uid, "group": gid}


ENDPOINTS = [
    ("GET", "/Users/{user}", None),
    ("PUT", "/Users/{user}", {"schemas": [USER], "userName": "stolen@acme.test"}),
    ("PATCH", "/Users/{user}", {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": False}]}),
    ("DELETE", "/Users/{user}", None),
    ("GET", "/Groups/{group}", None),
    ("PUT", "/Groups/{group}", {"schemas": [GROUP], "displayName": "Stolen", "members": []}),
    ("PATCH", "/Groups/{group}", {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "members"}]}),
    ("DELETE", "/Groups/{group}", None),
]


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_another_orgs_ids_are_404_and_untouched(db: Database, two, method, path, body) -> None:
    acme, globex, ids = two
    before = counts(db)
    response = acme.request(method, path.format(**ids), body)
    assert response.status_code == 404 and response.json["status"] == "404"
    assert counts(db) == before
    assert globex.get(f"/Users/{ids['user']}").json["active"] is True
    assert len(globex.get(f"/Groups/{ids['group']}").json["members"]) == 1


def test_lists_filters_and_search_never_show_another_org(two) -> None:
    acme, _, ids = two
    for response in (acme.get("/Users?count=1000"), acme.get('/Users?filter=userName eq "secret@globex.test"'),
                     acme.get(f'/Users?filter=id eq "{ids["user"]}"'), acme.get("/Groups"),
                     acme.post("/Users/.search", {"filter": 'userName sw "secret"'}),
                     acme.post("/Groups/.search", {"filter": 'displayName co "Globex"'})):
        assert response.status_code == 200
        assert ids["user"] not in response.get_data(as_text=True) and "Globex" not in response.get_data(as_text=True)


def test_another_orgs_user_cannot_join_my_group(db: Database, two) -> None:
    acme, _, ids = two
    response = acme.post("/Groups", {"schemas": [GROUP], "displayName": "Mine", "members": [{"value": ids["user"]}]})
    assert response.status_code == 400 and response.json["scimType"] == "invalidValue"


def test_bulk_cannot_reach_another_org(db: Database, two) -> None:
    acme, _, ids = two
    result = acme.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "DELETE", "path": f"/Users/{ids['user']}"},
        {"method": "PATCH", "path": f"/Groups/{ids['group']}", "data": {"Operations": [{"op": "remove", "path": "members"}]}},
    ]}).json
    assert [op["status"] for op in result["Operations"]] == ["404", "404"]


def test_bulk_with_bulk_id_references(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Bulky")
    response = scim.post("/Bulk", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
                                   "failOnErrors": 1, "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "u1", "data": {"schemas": [USER], "userName": "one@b.test"}},
        {"method": "POST", "path": "/Groups", "bulkId": "g1",
         "data": {"schemas": [GROUP], "displayName": "Bulk Team", "members": [{"value": "bulkId:u1"}]}},
    ]})
    assert response.status_code == 200
    ops = response.json["Operations"]
    assert [o["status"] for o in ops] == ["201", "201"] and ops[0]["location"].endswith(ops[0]["location"].split("/")[-1])
    group = scim.get("/Groups/" + ops[1]["location"].rsplit("/", 1)[1]).json
    assert group["members"][0]["value"] == ops[0]["location"].rsplit("/", 1)[1]


def test_bulk_stops_at_fail_on_errors(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Bulky")
    ops = [{"method": "POST", "path": "/Users", "bulkId": f"b{i}", "data": {"schemas": [USER], "userName": "dup@b.test"}}
           for i in range(4)]
    result = scim.post("/Bulk", {"failOnErrors": 2, "Operations": ops}).json["Operations"]
    assert [o["status"] for o in result] == ["201", "409", "409"]
    assert result[1]["response"]["scimType"] == "uniqueness"


def test_bulk_limits(db: Database, client: FlaskClient, system: Actor) -> None:
    """Over maxOperations or maxPayloadSize is 413, and the detail specifies the limits, as in RFC 7644
    section 3.7.4's example; ServiceProviderConfig advertises the same numbers."""
    scim = scim_for(db, client, system, "Bulky")
    advertised = scim.get("/ServiceProviderConfig").json["bulk"]
    limits = {"maxOperations": advertised["maxOperations"], "maxPayloadSize": advertised["maxPayloadSize"]}
    assert limits == {"maxOperations": 100, "maxPayloadSize": 1024 * 1024}
    too_many = scim.post("/Bulk", {"Operations": [{"method": "DELETE", "path": "/Users/x"}] * 101})
    assert too_many.status_code == 413 and too_many.json["status"] == "413"
    assert json.loads(too_many.json["detail"]) == limits
    filler = "x" * limits["maxPayloadSize"]
    too_big = scim.post("/Bulk", {"Operations": [{"method": "POST", "path": "/Users", "bulkId": "1",
                                                  "data": {"userName": filler}}]})
    assert too_big.status_code == 413 and too_big.json["status"] == "413"
    assert json.loads(too_big.json["detail"]) == limits
    assert scim.post("/Bulk", {"Operations": "nope"}).status_code == 400


def test_an_oversized_resource_says_the_limit(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Bulky")
    response = scim.post("/Users", {"userName": "x" * (1024 * 1024)})
    assert response.status_code == 413 and "1048576 bytes" in response.json["detail"]


def test_group_patch_is_atomic(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Atomic")
    uid = scim.create_user("x@a.test")["id"]
    gid = scim.create_group("G", [uid])["id"]
    before = counts(db)
    response = scim.patch(f"/Groups/{gid}", [
        {"op": "replace", "path": "displayName", "value": "Changed"},
        {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]}])
    assert response.status_code == 400
    assert scim.get(f"/Groups/{gid}").json["displayName"] == "G" and counts(db) == before


def test_duplicate_group_name_is_409(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Dups")
    scim.create_group("Ops")
    response = scim.post("/Groups", {"schemas": [GROUP], "displayName": "OPS"})
    assert response.status_code == 409 and response.json["scimType"] == "uniqueness"


def test_adding_members_reads_only_those_members(db: Database, client: FlaskClient, system: Actor) -> None:
    scim = scim_for(db, client, system, "Big")
    ids = [scim.create_user(f"u{i}@big.test")["id"] for i in range(30)]
    gid = scim.create_group("Big", ids[:25])["id"]
    statements: list[str] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        response = scim.patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": i} for i in ids[25:]]}])
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    assert response.status_code == 204
    touching = [s for s in statements if "idp_group_members" in s and s.lstrip().upper().startswith("SELECT")]
    assert touching and all(" IN " in s.upper() for s in touching), touching
    assert len(touching) <= 2, f"{len(touching)} queries of the members table for one PATCH of 5 members"


def test_nan_and_infinity_are_refused_in_patch_and_bulk_and_write_nothing(db: Database, client: FlaskClient,
                                                                           system: Actor) -> None:
    """Found by tests/scim/test_fuzz.py: `{"active": Infinity}` in a group PATCH reached PostgreSQL (a 500)."""
    scim = scim_for(db, client, system, "NanCo")
    group = scim.create_group("Eng")["id"]
    before = counts(db)
    patch = b'{"schemas": ["%s"], "Operations": [{"op": "add", "value": {"x-rank": Infinity}}]}' % PATCH.encode()
    bulk = (b'{"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [{"method": "POST", '
            b'"path": "/Users", "bulkId": "a", "data": {"schemas": ["%s"], "userName": "n@x.test", "x": NaN}}]}'
            % USER.encode())
    for method, path, body in (("PATCH", f"/Groups/{group}", patch), ("POST", "/Bulk", bulk)):
        response = scim.request(method, path, body)
        assert (response.status_code, response.json["scimType"]) == (400, "invalidSyntax"), response.json
        assert "not a JSON value" in response.json["detail"]
    assert counts(db) == before
