"""Regressions for what scim2-tester found (see test_conformance.py and docs/scim-conformance.md)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import ENTERPRISE, GROUP, USER, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "FixCo")


def test_get_user_honours_attributes_and_excluded_attributes(scim: Scim) -> None:
    uid = scim.create_user("ann@fix.test", name={"givenName": "Ann", "familyName": "Lee"}, title="Boss")["id"]
    without = scim.get(f"/Users/{uid}?excludedAttributes=name,groups")
    assert without.status_code == 200
    assert "name" not in without.json and "groups" not in without.json and without.json["title"] == "Boss"
    only = scim.get(f"/Users/{uid}?attributes=userName")
    assert set(only.json) == {"id", "schemas", "userName"}
    assert scim.get(f"/Users/{uid}").json["name"] == {"givenName": "Ann", "familyName": "Lee"}


def test_patch_and_put_of_a_user_honour_attributes(scim: Scim) -> None:
    uid = scim.create_user("bob@fix.test")["id"]
    patched = scim.request("PATCH", f"/Users/{uid}?attributes=displayName", {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Bob"}]})
    assert patched.status_code == 200 and set(patched.json) == {"id", "schemas", "displayName"}
    put = scim.put(f"/Users/{uid}?excludedAttributes=emails", {"schemas": [USER], "userName": "bob@fix.test",
                                                              "emails": [{"value": "bob@fix.test"}]})
    assert put.status_code == 200 and "emails" not in put.json and put.json["userName"] == "bob@fix.test"


def test_patch_whose_path_is_the_enterprise_extension(scim: Scim) -> None:
    uid = scim.create_user("cy@fix.test")["id"]
    manager = scim.create_user("boss@fix.test")["id"]
    added = scim.patch(f"/Users/{uid}", [{"op": "add", "path": ENTERPRISE, "value": {
        "schemas": [ENTERPRISE], "employeeNumber": "7", "department": "R&D", "manager": {"value": manager}}}])
    assert added.status_code == 200, added.json
    assert added.json[ENTERPRISE] == {"employeeNumber": "7", "department": "R&D", "manager": {"value": manager}}
    assert ENTERPRISE in added.json["schemas"]
    assert not [k for k in added.json if k.lower().startswith("urn:") and k != ENTERPRISE]
    # replace sets the sub-attributes given and leaves the others (RFC 7644 section 3.5.2.3)
    replaced = scim.patch(f"/Users/{uid}", [{"op": "Replace", "path": ENTERPRISE.upper(),
                                             "value": {"department": "Sales"}}])
    assert replaced.json[ENTERPRISE] == {"employeeNumber": "7", "department": "Sales", "manager": {"value": manager}}
    # a sub-attribute path next to it still works
    assert scim.patch(f"/Users/{uid}", [{"op": "add", "path": f"{ENTERPRISE}:costCenter", "value": "42"}]) \
        .json[ENTERPRISE]["costCenter"] == "42"
    removed = scim.patch(f"/Users/{uid}", [{"op": "remove", "path": ENTERPRISE}])
    assert removed.status_code == 200 and ENTERPRISE not in removed.json
    assert removed.json["schemas"] == [USER]
    assert ENTERPRISE not in scim.get(f"/Users/{uid}").json
    wrong = scim.patch(f"/Users/{uid}", [{"op": "add", "path": ENTERPRISE, "value": "R&D"}])
    assert wrong.status_code == 400 and wrong.json["scimType"] == "invalidValue"


def test_schemas_publish_reference_types_and_computed_member_display(scim: Scim) -> None:
    def attribute(urn: str, name: str) -> dict:
        return next(a for a in scim.get(f"/Schemas/{urn}").json["attributes"] if a["name"] == name)

    def sub(parent: dict, name: str) -> dict:
        return next(a for a in parent["subAttributes"] if a["name"] == name)

    members = attribute(GROUP, "members")
    assert sub(members, "$ref")["referenceTypes"] == ["User"]
    assert sub(members, "type")["canonicalValues"] == ["User"]
    assert sub(members, "display")["mutability"] == "readOnly"
    assert sub(attribute(USER, "groups"), "$ref")["referenceTypes"] == ["Group"]
    assert sub(attribute(ENTERPRISE, "manager"), "$ref")["referenceTypes"] == ["User"]
    assert attribute(USER, "profileUrl")["referenceTypes"] == ["external"]
    assert sub(attribute(USER, "photos"), "value")["referenceTypes"] == ["external"]
    assert "referenceTypes" not in attribute(USER, "userName")


def test_group_external_id_can_be_removed_and_replaced(scim: Scim) -> None:
    gid = scim.create_group("Ops", externalId="ext-ops")["id"]
    assert scim.patch(f"/Groups/{gid}", [{"op": "remove", "path": "externalId"}]).status_code == 204
    assert "externalId" not in scim.get(f"/Groups/{gid}").json
    scim.patch(f"/Groups/{gid}", [{"op": "replace", "path": "externalId", "value": "ext-2"}])
    assert scim.get(f"/Groups/{gid}").json["externalId"] == "ext-2"
    # PUT replaces the whole group: an externalId it leaves out is gone (as for users)
    put = scim.put(f"/Groups/{gid}", {"schemas": [GROUP], "displayName": "Ops"})
    assert put.status_code == 200 and "externalId" not in put.json
    kept = scim.put(f"/Groups/{gid}", {"schemas": [GROUP], "displayName": "Ops", "externalId": "ext-3"})
    assert kept.json["externalId"] == "ext-3"
