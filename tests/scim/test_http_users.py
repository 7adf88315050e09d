"""SCIM Users over HTTP: the lifecycle, errors, paging, ETags (RFC 7644 section 3)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from identity.models import ApiKey, Org
from tests.factories import counts
from tests.scim.client import ENTERPRISE, USER, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def test_create_get_and_location(scim: Scim) -> None:
    created = scim.create_user("Alice@Example.com", name={"givenName": "Alice", "familyName": "Liddell"},
                               externalId="okta-00u1")
    assert created["id"] and created["meta"]["resourceType"] == "User"
    got = scim.get(f"/Users/{created['id']}")
    assert got.status_code == 200 and got.content_type == "application/scim+json"
    assert got.headers["ETag"] == created["meta"]["version"]
    assert got.json["name"] == {"givenName": "Alice", "familyName": "Liddell"}
    assert got.json["userName"] == "Alice@Example.com" and got.json["externalId"] == "okta-00u1"
    assert got.json["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")


def test_duplicate_user_name_is_409_case_insensitively(scim: Scim, db: Database) -> None:
    scim.create_user("bob@example.com")
    before = counts(db)
    response = scim.post("/Users", {"schemas": [USER], "userName": "BOB@example.com"})
    assert response.status_code == 409
    assert response.json == {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], "status": "409",
                             "scimType": "uniqueness", "detail": response.json["detail"]}
    assert counts(db) == before


def test_unknown_or_malformed_ids_are_404(scim: Scim) -> None:
    for path in ("/Users/00000000-0000-0000-0000-000000000000", "/Users/not-a-uuid", "/Groups/nope"):
        response = scim.get(path)
        assert response.status_code == 404 and response.json["status"] == "404"


def test_missing_and_wrong_credentials_are_401(client: FlaskClient, scim: Scim) -> None:
    """RFC 6750 section 3: a token that does not verify is `invalid_token` (Okta and Entra show the
    error to the admin); a request with no credential gets the bare challenge, with no error code."""
    for header in ({}, {"Authorization": "Bearer scim_000000000000_wrong"}, {"Authorization": "Bearer eyJ.x.y"}):
        response = client.get("/scim/v2/Users", headers=header)
        assert response.status_code == 401
        expected = 'Bearer realm="scim"' + (', error="invalid_token"' if header else "")
        assert response.headers["WWW-Authenticate"] == expected
        assert response.json["status"] == "401"


def test_unknown_attributes_and_extension_are_kept(scim: Scim) -> None:
    created = scim.create_user("carol@example.com", **{
        "schemas": [USER, ENTERPRISE, "urn:example:custom"],
        ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "boss-id"}},
        "urn:example:custom": {"badge": 42}, "nickName": "Caz", "favoriteColor": "teal"})
    got = scim.get(f"/Users/{created['id']}").json
    assert got[ENTERPRISE]["employeeNumber"] == "701984" and got[ENTERPRISE]["manager"]["value"] == "boss-id"
    assert got["urn:example:custom"] == {"badge": 42} and got["favoriteColor"] == "teal"
    assert ENTERPRISE in got["schemas"]


def test_attribute_names_are_case_insensitive(scim: Scim) -> None:
    response = scim.post("/Users", {"schemas": [USER], "UserName": "dave@example.com", "Active": "True",
                                    "NAME": {"GivenName": "Dave"}})
    assert response.status_code == 201, response.json
    assert response.json["userName"] == "dave@example.com" and response.json["name"]["givenName"] == "Dave"


@pytest.mark.parametrize("body,status,scim_type", [
    (b"{not json", 400, "invalidSyntax"),
    (b"[]", 400, "invalidSyntax"),
    ({"schemas": [USER]}, 400, "invalidValue"),
    ({"schemas": [USER], "userName": 12}, 400, "invalidValue"),
    ({"schemas": [USER], "userName": "x@y.z", "active": "maybe"}, 400, "invalidValue"),
    ({"schemas": [USER], "userName": "x@y.z", "emails": "x@y.z"}, 400, "invalidValue"),
    ({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "x@y.z"}, 400, "invalidSyntax"),
    ({"schemas": [USER], "userName": "nul\u0000@y.z"}, 400, "invalidValue"),
    ({"schemas": [USER], "userName": "x@y.z", "title": {"deep": ["a\u0000"]}}, 400, "invalidValue"),
    # Python's JSON reader takes these; RFC 8259 does not, and PostgreSQL's JSON type refused them (a 500)
    (b'{"schemas": ["%s"], "userName": "x@y.z", "x-score": NaN}' % USER.encode(), 400, "invalidSyntax"),
    (b'{"schemas": ["%s"], "userName": "x@y.z", "x-score": -Infinity}' % USER.encode(), 400, "invalidSyntax"),
    (b'{"schemas": ["%s"], "userName": "x@y.z", "x-score": 1e999}' % USER.encode(), 400, "invalidSyntax"),
    ({"schemas": [USER], "userName": "x@y.z", "emails": [{"value": "x\u0001@y.z", "primary": True}]}, 400,
     "invalidValue"),
])
def test_bad_user_bodies_are_precise_and_write_nothing(scim: Scim, db: Database, body, status, scim_type) -> None:
    before = counts(db)
    response = scim.post("/Users", body)
    assert (response.status_code, response.json["status"], response.json.get("scimType")) == (str(status) and status, str(status), scim_type)
    assert counts(db) == before


def test_oversized_body_is_413(scim: Scim) -> None:
    response = scim.post("/Users", b'{"userName": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert response.status_code == 413 and response.json["status"] == "413"


def test_deactivate_keeps_user_readable_blocks_keys_frees_seat(scim: Scim, db: Database, system: Actor) -> None:
    from identity import keys

    user = scim.create_user("erin@example.com")
    with db.transaction() as session:
        from identity.users import default_team

        key = keys.create_api_key(session, system, scim.org_id, user_id=user["id"],
                                  team_id=default_team(session, scim.org_id).id, name="k", scopes=[])
    response = scim.patch(f"/Users/{user['id']}", [{"op": "replace", "value": {"active": False}}])
    assert response.status_code == 200 and response.json["active"] is False
    assert scim.get(f"/Users/{user['id']}").json["active"] is False
    listed = scim.get('/Users?filter=userName eq "erin@example.com"').json
    assert listed["totalResults"] == 1 and listed["Resources"][0]["active"] is False
    with db.reading() as session:
        assert session.get(ApiKey, key.id).status == "blocked"
        assert session.get(Org, scim.org_id).seats_used == 1
    assert scim.patch(f"/Users/{user['id']}", [{"op": "Replace", "path": "active", "value": "True"}]).status_code == 200
    with db.reading() as session:
        assert session.get(ApiKey, key.id).status == "active"
        assert session.get(Org, scim.org_id).seats_used == 2


def test_staged_user_posted_inactive_takes_no_seat(scim: Scim, db: Database) -> None:
    scim.create_user("staged@example.com", active=False)
    with db.reading() as session:
        assert session.get(Org, scim.org_id).seats_used == 1


def test_delete_is_204_then_404_and_keeps_a_tombstone(scim: Scim, db: Database) -> None:
    user = scim.create_user("frank@example.com")
    assert scim.delete(f"/Users/{user['id']}").status_code == 204
    assert scim.get(f"/Users/{user['id']}").status_code == 404
    assert scim.delete(f"/Users/{user['id']}").status_code == 404
    from identity.models import User

    with db.reading() as session:
        assert session.get(User, user["id"]).deleted_at is not None


def test_if_match_mismatch_is_412_and_changes_nothing(scim: Scim) -> None:
    user = scim.create_user("gina@example.com")
    stale = user["meta"]["version"]
    assert scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "displayName", "value": "G"}],
                      **{"If-Match": stale}).status_code == 200
    response = scim.patch(f"/Users/{user['id']}", [{"op": "replace", "path": "displayName", "value": "H"}],
                          **{"If-Match": stale})
    assert response.status_code == 412
    assert scim.get(f"/Users/{user['id']}").json["displayName"] == "G"


def test_pages_of_five_over_eleven_users(scim: Scim) -> None:
    for i in range(10):
        scim.create_user(f"user{i:02}@example.com")
    seen = []
    for start in (1, 6, 11):
        page = scim.get(f"/Users?startIndex={start}&count=5").json
        assert page["totalResults"] == 11 and page["startIndex"] == start
        assert page["itemsPerPage"] == len(page["Resources"]) == (5 if start < 11 else 1)
        seen += [r["id"] for r in page["Resources"]]
    assert len(set(seen)) == 11
    assert scim.get("/Users?startIndex=x").status_code == 400


def test_filter_errors_are_invalid_filter(scim: Scim) -> None:
    for bad in ('userName eq', 'nosuch eq "x"', 'userName xx "y"', '((userName eq "a")'):
        response = scim.get(f"/Users?filter={bad}")
        assert response.status_code == 400 and response.json["scimType"] == "invalidFilter", bad
    assert scim.get('/Users?filter=userName eq "nobody@x.y"').json["totalResults"] == 0


def test_seat_cap_is_403_saying_so(db: Database, client: FlaskClient, system: Actor) -> None:
    capped = scim_for(db, client, system, "Capped", max_seats=1)
    before = counts(db)
    response = capped.post("/Users", {"schemas": [USER], "userName": "one@capped.test"})
    assert response.status_code == 403 and "seat limit" in response.json["detail"]
    assert counts(db)["users"] == before["users"]


def test_discovery_endpoints(scim: Scim) -> None:
    config = scim.get("/ServiceProviderConfig").json
    assert config["patch"]["supported"] and config["filter"]["maxResults"] == 1000
    assert {r["id"] for r in scim.get("/ResourceTypes").json["Resources"]} == {"User", "Group"}
    assert scim.get("/ResourceTypes/User").json["schema"] == USER
    assert scim.get(f"/Schemas/{USER}").json["id"] == USER
    assert scim.get("/Schemas/urn:nope").status_code == 404
    assert scim.post("/ServiceProviderConfig", {}).status_code == 405
    refused = scim.request("DELETE", "/Schemas")  # a 405 names what is allowed (RFC 9110 section 15.5.6)
    assert refused.status_code == 405 and "GET" in refused.headers.get("Allow", "")
    assert refused.content_type.startswith("application/scim+json")


def test_sort_filter_by_time_and_attribute_selection(scim: Scim) -> None:
    import datetime as dt

    from audit import clock

    with clock.frozen_at(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)):
        old = scim.create_user("zed@example.com", displayName="Zed")
    with clock.frozen_at(dt.datetime(2026, 6, 1, tzinfo=dt.UTC)):
        scim.create_user("amy@example.com", displayName="amy")
    names = [r["userName"] for r in scim.get("/Users?sortBy=userName&sortOrder=descending").json["Resources"]]
    assert names == sorted(names, key=str.lower, reverse=True)
    recent = scim.get('/Users?filter=meta.lastModified gt "2026-03-01T00:00:00Z" and userName ne "x"').json
    assert "zed@example.com" not in [r["userName"] for r in recent["Resources"]]
    assert "amy@example.com" in [r["userName"] for r in recent["Resources"]]
    picked = scim.get(f'/Users?filter=id eq "{old["id"]}"&attributes=userName').json["Resources"][0]
    assert set(picked) == {"id", "schemas", "userName"}
    dropped = scim.get(f'/Users?filter=id eq "{old["id"]}"&excludedAttributes=emails,name').json["Resources"][0]
    assert "emails" not in dropped and dropped["userName"] == "zed@example.com"
    assert scim.get("/Users?sortBy=nosuch").json["scimType"] == "invalidFilter"
