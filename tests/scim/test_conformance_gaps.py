"""SCIM protocol bugs a review found (RFC 7643/7644, Okta's and Entra ID's documented behaviour).

Each test failed on the code it was written against; the docstring names the rule it checks.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import GROUP, USER, Scim, scim_for

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "ReviewCo")


def _bulk(scim: Scim, operations: list[dict], **extra: object) -> list[dict]:
    response = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "Operations": operations, **extra})
    assert response.status_code == 200, response.json
    return response.json["Operations"]


# -- ETags and meta.version (RFC 7644 section 3.14, RFC 7643 section 3.1) ---------------------

def test_a_groups_version_changes_when_its_members_change(scim: Scim) -> None:
    """A group's members are part of its representation: adding one must give it a new
    meta.version/ETag and lastModified. Otherwise If-None-Match answers 304 for a changed group and
    an If-Match PUT made from a stale copy silently wipes the member another client added."""
    member = scim.create_user("member@review.test")["id"]
    seen = scim.create_group("Eng")
    gid, stale = seen["id"], seen["meta"]["version"]

    added = scim.patch(f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": member}]}])
    assert added.status_code == 204

    # A client that read the group before the member was added replaces it, conditionally.
    put = scim.put(f"/Groups/{gid}", {"schemas": [GROUP], "displayName": "Eng", "members": []},
                   **{"If-Match": stale})
    assert put.status_code == 412, put.json
    now = scim.get(f"/Groups/{gid}")
    assert [m["value"] for m in now.json["members"]] == [member]
    assert now.json["meta"]["version"] != stale
    assert now.json["meta"]["lastModified"] > seen["meta"]["lastModified"]
    assert scim.get(f"/Groups/{gid}", **{"If-None-Match": stale}).status_code == 200


# -- Lookups find what was created (Okta's and Entra's "look up, then create" sequence) ----------

def test_a_name_sent_with_surrounding_spaces_is_found_by_the_lookup_it_refuses_to_recreate(scim: Scim) -> None:
    """userName and a group's displayName are stored stripped, while `eq` compares the value as sent:
    the IdP's lookup (`userName eq " x "`) finds nothing, and its create is then 409 uniqueness, on
    every sync. Entra: "Values sent should be stored in the same format they were sent" and any
    attribute used for uniqueness "must be usable as part of a filtered query"."""
    name = " spaced@review.test "
    assert scim.post("/Users", {"schemas": [USER], "userName": name}).status_code == 201
    assert scim.post("/Users", {"schemas": [USER], "userName": name}).status_code == 409
    found = scim.get(f'/Users?filter=userName eq "{name}"')
    assert found.json["totalResults"] == 1
    group = " Spaced Group "
    assert scim.post("/Groups", {"schemas": [GROUP], "displayName": group}).status_code == 201
    assert scim.post("/Groups", {"schemas": [GROUP], "displayName": group}).status_code == 409
    found = scim.get(f'/Groups?filter=displayName eq "{group}"&excludedAttributes=members')
    assert found.json["totalResults"] == 1


# -- Sorting (RFC 7644 section 3.4.2.3) ---------------------------------------------------------

def test_resources_without_the_sort_value_come_last_ascending_and_first_descending(scim: Scim) -> None:
    """RFC 7644 section 3.4.2.3: "if there is no data for the specified sortBy value, they are
    sorted via the sortOrder parameter, i.e., they are ordered last if ascending and first if
    descending." (The org's owner has no name.familyName.)"""
    scim.create_user("zed@review.test", name={"familyName": "Zed"})
    scim.create_user("adams@review.test", name={"familyName": "Adams"})

    def order(query: str) -> list[str]:
        response = scim.get(f"/Users?{query}")
        assert response.status_code == 200, response.json
        return [u["userName"] for u in response.json["Resources"]]

    assert order("sortBy=name.familyName") == ["adams@review.test", "zed@review.test", "owner@reviewco.test"]
    assert order("sortBy=name.familyName&sortOrder=descending") == [
        "owner@reviewco.test", "zed@review.test", "adams@review.test"]


# -- Bulk (RFC 7644 section 3.7) -----------------------------------------------------------------

def test_a_bulk_operations_version_is_a_precondition(scim: Scim) -> None:
    """RFC 7644 section 3.7: an operation's `version` is the resource version it applies to (an
    ETag, for PUT, PATCH and DELETE); section 3.7.3's example answers a stale one with 412
    "Resource changed on the server". ServiceProviderConfig advertises etag support."""
    user = scim.create_user("versioned@review.test")
    uid = user["id"]
    assert scim.patch(f"/Users/{uid}", [{"op": "replace", "path": "title", "value": "Now"}]).status_code == 200

    (outcome,) = _bulk(scim, [{"method": "PUT", "path": f"/Users/{uid}", "version": user["meta"]["version"],
                               "data": {"schemas": [USER], "userName": "versioned@review.test", "title": "Stale"}}])
    assert outcome["status"] == "412", outcome
    assert scim.get(f"/Users/{uid}").json["title"] == "Now"


def test_every_bulk_outcome_but_a_failed_post_has_a_location(scim: Scim) -> None:
    """RFC 7644 section 3.7: "location: The resource endpoint URL. REQUIRED in a response, except
    in the event of a POST failure." A group PATCH and DELETEs answer 204 and a failed PUT an error,
    and each still needs its location."""
    uid = scim.create_user("gone@review.test")["id"]
    gid = scim.create_group("Temp")["id"]
    base = "http://localhost/scim/v2"
    outcomes = _bulk(scim, [
        {"method": "PATCH", "path": f"/Groups/{gid}",
         "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "displayName", "value": "T2"}]}},
        {"method": "DELETE", "path": f"/Groups/{gid}"},
        {"method": "DELETE", "path": f"/Users/{uid}"},
        {"method": "PUT", "path": f"/Users/{uid}", "data": {"schemas": [USER], "userName": "gone@review.test"}},
    ])
    assert [o["status"] for o in outcomes] == ["204", "204", "204", "404"]
    assert [o.get("location") for o in outcomes] == [
        f"{base}/Groups/{gid}", f"{base}/Groups/{gid}", f"{base}/Users/{uid}", f"{base}/Users/{uid}"]


def test_a_bulk_id_in_an_operations_path_is_resolved(scim: Scim) -> None:
    """RFC 7644 section 3.7.2: "The service provider MUST replace the string "bulkId:qwerty" with the
    permanent resource id once created" - also where a later operation's path names the new user."""
    created, patched = _bulk(scim, [
        {"method": "POST", "path": "/Users", "bulkId": "qwerty",
         "data": {"schemas": [USER], "userName": "bulk@review.test"}},
        {"method": "PATCH", "path": "/Users/bulkId:qwerty",
         "data": {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Patched"}]}},
    ])
    assert created["status"] == "201"
    assert patched["status"] == "200", patched
    assert scim.get(created["location"].split("/scim/v2", 1)[1]).json["title"] == "Patched"


def test_bulk_request_attribute_names_are_case_insensitive(scim: Scim) -> None:
    """RFC 7643 section 2.1: attribute names are case-insensitive; the PATCH body's `Operations`
    and `op` are read so (scim.patch), the BulkRequest's `Operations`, `method`, `path`, `bulkId`
    and `data` are not."""
    lower = scim.post("/Bulk", {"schemas": [BULK_REQUEST], "operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": [USER], "userName": "a@review.test"}}]})
    assert lower.status_code == 200, lower.json
    assert lower.json["Operations"][0]["status"] == "201"
    (capitalised,) = _bulk(scim, [{"Method": "POST", "Path": "/Users", "BulkId": "b",
                                   "Data": {"schemas": [USER], "userName": "b@review.test"}}])
    assert capitalised["status"] == "201", capitalised


# -- Media type (Entra: "The header for all the responses should be of content-Type: application/scim+json")

def test_no_content_answers_do_not_claim_to_be_html(scim: Scim) -> None:
    """A 204 (group PATCH, DELETE) and a 304 go out with `Content-Type: text/html; charset=utf-8`
    (Flask's default): a SCIM response is application/scim+json (RFC 7644 section 3.1), or has no
    body type at all when it has no body."""
    uid = scim.create_user("del@review.test")["id"]
    group = scim.create_group("Media")
    answers = {
        "patch": scim.patch(f"/Groups/{group['id']}", [{"op": "replace", "path": "displayName", "value": "M2"}]),
        "304": scim.get(f"/Users/{uid}", **{"If-None-Match": scim.get(f"/Users/{uid}").headers["ETag"]}),
        "delete": scim.delete(f"/Users/{uid}"),
    }
    assert {k: r.status_code for k, r in answers.items()} == {"patch": 204, "304": 304, "delete": 204}
    assert {k: r.headers.get("Content-Type") for k, r in answers.items()
            if r.headers.get("Content-Type") not in (None, "application/scim+json")} == {}


# -- What the service advertises and stores (RFC 7643 sections 2.4 and 7) --------------------

def test_schemas_do_not_call_a_users_display_name_unique(scim: Scim) -> None:
    """/Schemas publishes User displayName (and manager.displayName) with `uniqueness: server`,
    yet two users share a displayName freely: the schema must describe what the service does
    (RFC 7643 section 7: "server" means unique within the service provider's current data set)."""
    scim.create_user("one@review.test", displayName="Same Name")
    assert scim.post("/Users", {"schemas": [USER], "userName": "two@review.test",
                                "displayName": "Same Name"}).status_code == 201
    attributes = scim.get(f"/Schemas/{USER}").json["attributes"]
    display = next(a for a in attributes if a["name"] == "displayName")
    assert display["uniqueness"] == "none"


def test_a_created_user_has_at_most_one_primary_email(scim: Scim) -> None:
    """RFC 7643 section 2.4: "The primary attribute value "true" MUST appear no more than once."
    A POST with two primary emails is stored and served with two (PATCH settles it; POST and PUT
    do not). Refusing it (400 invalidValue) or keeping one primary would both do."""
    response = scim.post("/Users", {"schemas": [USER], "userName": "prim@review.test", "emails": [
        {"value": "p1@review.test", "type": "work", "primary": True},
        {"value": "p2@review.test", "type": "home", "primary": True}]})
    if response.status_code == 400:
        assert response.json["scimType"] == "invalidValue"
        return
    assert response.status_code == 201
    stored = scim.get(f"/Users/{response.json['id']}").json
    assert sum(1 for e in stored["emails"] if e.get("primary") is True) <= 1
