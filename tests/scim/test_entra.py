"""Microsoft Entra ID's provisioning requests, with and without the aadOptscim062020 flag."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import ENTERPRISE, GROUP, USER, Scim, scim_for

AAD_GROUP = "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"


@pytest.fixture
def entra(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "EntraCo")


def _user(name: str, external: str) -> dict:
    return {"schemas": [USER, ENTERPRISE], "externalId": external, "userName": name, "active": True,
            "emails": [{"primary": True, "type": "work", "value": name}], "meta": {"resourceType": "User"},
            "name": {"formatted": "Given Family", "familyName": "Family", "givenName": "Given"}, "roles": [],
            ENTERPRISE: {"department": "R&D", "employeeNumber": "42"}}


def test_entra_connection_test_and_user_lifecycle(entra: Scim) -> None:
    probe = entra.get(f'/Users?filter=userName eq "{uuid.uuid4()}"')
    assert probe.status_code == 200 and probe.json["totalResults"] == 0
    created = entra.post("/Users", _user("Test_User_1@contoso.com", "a7d0b5f2"))
    assert created.status_code == 201
    uid = created.json["id"]
    assert created.json[ENTERPRISE]["department"] == "R&D"
    by_external = entra.get('/Users?filter=externalId eq "a7d0b5f2"')
    assert by_external.json["Resources"][0]["id"] == uid
    # One op per path, capitalised ops; a work email replaced where none existed is added.
    patched = entra.patch(f"/Users/{uid}", [
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "Updated"},
        {"op": "Add", "path": 'phoneNumbers[type eq "mobile"].value', "value": "+1 555 0100"}])
    assert patched.status_code == 200, patched.json
    body = patched.json
    assert [e["value"] for e in body["emails"] if e.get("type") == "work"] == ["updated@contoso.com"]
    assert body["name"]["familyName"] == "Updated" and body["phoneNumbers"][0]["value"] == "+1 555 0100"
    # Path-less replace with dotted and URN-prefixed keys.
    pathless = entra.patch(f"/Users/{uid}", [{"op": "replace", "value": {
        "name.givenName": "Newgiven", f"{ENTERPRISE}:department": "Sales", "displayName": "New Name"}}])
    assert pathless.json["name"]["givenName"] == "Newgiven" and pathless.json[ENTERPRISE]["department"] == "Sales"
    assert pathless.json["displayName"] == "New Name"
    # Disable with the string "False", as Entra sends without the flag.
    disabled = entra.patch(f"/Users/{uid}", [{"op": "Replace", "path": "active", "value": "False"}])
    assert disabled.json["active"] is False and entra.get(f"/Users/{uid}").status_code == 200
    assert entra.delete(f"/Users/{uid}").status_code == 204
    assert entra.get(f"/Users/{uid}").status_code == 404


def test_entra_manager_set_replaced_and_cleared(entra: Scim) -> None:
    boss = entra.create_user("boss@contoso.com")["id"]
    boss2 = entra.create_user("boss2@contoso.com")["id"]
    uid = entra.create_user("worker@contoso.com")["id"]
    path = f"{ENTERPRISE}:manager"
    entra.patch(f"/Users/{uid}", [{"op": "Add", "path": path, "value": boss}])
    assert entra.get(f"/Users/{uid}").json[ENTERPRISE]["manager"]["value"] == boss
    entra.patch(f"/Users/{uid}", [{"op": "Replace", "path": path, "value": {"value": boss2}}])
    assert entra.get(f"/Users/{uid}").json[ENTERPRISE]["manager"]["value"] == boss2
    cleared = entra.patch(f"/Users/{uid}", [{"op": "Replace", "path": path, "value": ""}])
    assert cleared.status_code == 200 and "manager" not in cleared.json.get(ENTERPRISE, {})


def test_entra_group_sync_member_add_and_remove(entra: Scim) -> None:
    members = [entra.create_user(f"m{i}@contoso.com")["id"] for i in range(3)]
    created = entra.post("/Groups", {"schemas": [GROUP, AAD_GROUP], "externalId": "8aa1a0c0-c4c3-4bc0",
                                     "displayName": "Group1DisplayName", "meta": {"resourceType": "Group"}})
    assert created.status_code == 201
    gid = created.json["id"]
    assert created.json["schemas"][0] == GROUP and created.json["externalId"] == "8aa1a0c0-c4c3-4bc0"
    found = entra.get('/Groups?excludedAttributes=members&filter=displayName eq "Group1DisplayName"')
    assert found.json["totalResults"] == 1 and "members" not in found.json["Resources"][0]
    added = entra.patch(f"/Groups/{gid}", [{"op": "Add", "path": "members",
                                            "value": [{"$ref": None, "value": m} for m in members]}])
    assert added.status_code == 204
    # Entra's Remove with a value array removes exactly those members, not the whole group.
    removed = entra.patch(f"/Groups/{gid}", [{"op": "Remove", "path": "members",
                                              "value": [{"$ref": None, "value": members[0]}]}])
    assert removed.status_code == 204
    assert {m["value"] for m in entra.get(f"/Groups/{gid}").json["members"]} == set(members[1:])
    # Resending a removal of a member already gone succeeds and changes nothing.
    again = entra.patch(f"/Groups/{gid}", [{"op": "Remove", "path": "members", "value": [{"value": members[0]}]}])
    assert again.status_code == 204
    renamed = entra.patch(f"/Groups/{gid}", [{"op": "Replace", "path": "displayName", "value": "Group1 New"}])
    assert renamed.status_code == 204
    assert entra.get('/Groups?filter=displayName eq "Group1 New"').json["totalResults"] == 1
