"""`attributes` and `excludedAttributes` down to sub-attributes (RFC 7644 sections 3.4.2.5, 3.9, 3.10):
`name.familyName` returns `name` with only `familyName`, on GET, .search, list pages and the answers
of PUT and PATCH."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import ENTERPRISE, GROUP, USER, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


@pytest.fixture
def babs(scim: Scim) -> dict[str, Any]:
    return scim.create_user(
        "bjensen@example.com", name={"givenName": "Barbara", "familyName": "Jensen", "middleName": "Ann"},
        emails=[{"value": "bjensen@example.com", "type": "work", "primary": True}, {"value": "b@home.org", "type": "home"}],
        schemas=[USER, ENTERPRISE], **{ENTERPRISE: {"department": "Tours", "costCenter": "4130"}})


def _one(page: dict[str, Any]) -> dict[str, Any]:
    assert page["totalResults"] == 1, page
    resource: dict[str, Any] = page["Resources"][0]
    return resource


def test_attributes_pick_sub_attributes_on_get_search_and_list(scim: Scim, babs: dict[str, Any]) -> None:
    path, by_id = f"/Users/{babs['id']}", f'filter=id eq "{babs["id"]}"'
    only_family = {"id": babs["id"], "schemas": babs["schemas"], "name": {"familyName": "Jensen"}}
    assert scim.get(f"{path}?attributes=name.familyName").json == only_family
    assert scim.get(f"{path}?attributes={USER}:name.familyName").json == only_family
    assert _one(scim.get(f"/Users?{by_id}&attributes=name.familyName").json) == only_family
    searched = scim.post("/Users/.search", {"filter": f'id eq "{babs["id"]}"', "attributes": ["name.familyName"]})
    assert _one(searched.json) == only_family

    picked = scim.get(f"{path}?attributes=emails.value,{ENTERPRISE}:department,userName").json
    assert picked["emails"] == [{"value": "bjensen@example.com"}, {"value": "b@home.org"}]
    assert picked[ENTERPRISE] == {"department": "Tours"} and picked["userName"] == "bjensen@example.com"
    assert set(picked) == {"id", "schemas", "emails", ENTERPRISE, "userName"}


def test_excluded_attributes_drop_sub_attributes(scim: Scim, babs: dict[str, Any]) -> None:
    path = f"/Users/{babs['id']}"
    shown = scim.get(f"{path}?excludedAttributes=name.familyName,emails.type,{ENTERPRISE}:costCenter").json
    assert shown["name"] == {"givenName": "Barbara", "middleName": "Ann"}
    assert [set(e) for e in shown["emails"]] == [{"value", "primary"}, {"value"}]
    assert shown[ENTERPRISE] == {"department": "Tours"} and shown["userName"] == "bjensen@example.com"
    listed = _one(scim.get(f'/Users?filter=id eq "{babs["id"]}"&excludedAttributes=name.givenName').json)
    assert listed["name"] == {"familyName": "Jensen", "middleName": "Ann"} and "emails" in listed
    assert scim.get(f"{path}?excludedAttributes=id,name").json["id"] == babs["id"]  # id is always returned


def test_put_and_patch_answers_are_projected(scim: Scim, babs: dict[str, Any]) -> None:
    path = f"/Users/{babs['id']}"
    patched = scim.request("PATCH", f"{path}?attributes=name.givenName", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "name.givenName", "value": "Babs"}]})
    assert patched.status_code == 200 and patched.json["name"] == {"givenName": "Babs"}
    assert set(patched.json) == {"id", "schemas", "name"}
    replaced = scim.put(f"{path}?excludedAttributes=name.middleName",
                        {"schemas": [USER], "userName": "bjensen@example.com",
                         "name": {"givenName": "B", "familyName": "J", "middleName": "A"}})
    assert replaced.status_code == 200 and replaced.json["name"] == {"givenName": "B", "familyName": "J"}


def test_group_members_sub_attributes(scim: Scim, babs: dict[str, Any]) -> None:
    group = scim.create_group("Tours", [babs["id"]])
    path = f"/Groups/{group['id']}"
    assert scim.get(f"{path}?attributes=members.value").json["members"] == [{"value": babs["id"]}]
    without_display = scim.get(f"{path}?excludedAttributes=members.display,members.$ref").json
    assert without_display["members"] == [{"value": babs["id"], "type": "User"}]
    assert without_display["displayName"] == "Tours"
    listed = _one(scim.get('/Groups?filter=displayName eq "Tours"&attributes=members.value').json)
    assert listed["members"] == [{"value": babs["id"]}] and "displayName" not in listed
    replaced = scim.put(f"{path}?attributes=displayName",
                        {"schemas": [GROUP], "displayName": "Tours 2", "members": [{"value": babs["id"]}]})
    assert replaced.status_code == 200
    assert replaced.json == {"id": group["id"], "schemas": [GROUP], "displayName": "Tours 2"}
