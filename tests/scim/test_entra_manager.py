"""Entra ID's enterprise `manager` on a create or a replace: sent as the manager's id, a bare string
(or "" for none), answered as RFC 7643 section 4.3's complex `{"value": id}`, as a PATCH already was
(test_entra.py). These tests failed before: the string came back as sent."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import ENTERPRISE, USER, Scim, scim_for


@pytest.fixture
def entra(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "EntraInterop")


@pytest.mark.parametrize("key", ["manager", "Manager"])
def test_entra_create_with_manager_as_a_plain_id_answers_the_complex_manager(entra: Scim, key: str) -> None:
    """Entra ID creates a user with the enterprise `manager` as the manager's id, a plain string
    (its tutorial's user example: `"urn:...:enterprise:2.0:User": {"Manager": "123456"}`), and then
    reads the answer (and every later GET) as RFC 7643 section 4.3's complex `{"value": id}`.
    A bare string back makes Entra fail the user with "We are not able to deserialize the resource
    received from your SCIM endpoint" (SystemForCrossDomainIdentityManagementServiceIncompatible).

    https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups
    (Design your user and group schema: the user example with "Manager": "123456")
    https://github.com/apache/directory-scimple/issues/1242 (Entra sends `manager` as a string)
    https://github.com/Budibase/budibase/issues/15369 (Entra refuses a SCIM user whose manager is not complex)

    """
    boss = entra.create_user("boss@contoso.com")["id"]
    created = entra.post("/Users", {
        "schemas": [USER, ENTERPRISE], "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "worker@contoso.com", "active": True,
        "emails": [{"primary": True, "type": "work", "value": "worker@contoso.com"}],
        "meta": {"resourceType": "User"}, "name": {"familyName": "Worker", "givenName": "Wanda"},
        ENTERPRISE: {key: boss, "department": "R&D"}})
    assert created.status_code == 201, created.json
    assert created.json[ENTERPRISE]["manager"] == {"value": boss}, created.json[ENTERPRISE]
    read = entra.get(f"/Users/{created.json['id']}")
    assert read.json[ENTERPRISE]["manager"] == {"value": boss}, read.json[ENTERPRISE]


def test_entra_replace_with_manager_as_a_plain_id_or_empty_answers_the_complex_manager_or_none(entra: Scim) -> None:
    boss = entra.create_user("boss@contoso.com")["id"]
    worker = entra.create_user("worker@contoso.com")["id"]
    body = {"schemas": [USER, ENTERPRISE], "userName": "worker@contoso.com", ENTERPRISE: {"manager": boss}}
    replaced = entra.put(f"/Users/{worker}", body)
    assert replaced.status_code == 200 and replaced.json[ENTERPRISE]["manager"] == {"value": boss}
    body[ENTERPRISE] = {"manager": "", "department": "R&D"}
    cleared = entra.put(f"/Users/{worker}", body)
    assert cleared.status_code == 200 and cleared.json[ENTERPRISE] == {"department": "R&D"}
    assert entra.get(f'/Users?filter={ENTERPRISE}:manager.value eq "{boss}"').json["totalResults"] == 0
