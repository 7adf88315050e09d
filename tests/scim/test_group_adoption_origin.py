"""Only a group a SAML claim made (`from_claim`) is adopted by the IdP's SCIM create: one SCIM made,
whatever its names, is not (a review found a displayName equal to its externalId taken for a claim's)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import GROUP, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def test_a_scim_create_does_not_adopt_a_group_scim_itself_made(scim: Scim) -> None:
    """groups._claimed_by_sign_in takes "display_name == external_id" as the mark of a group a SAML claim
    made, but a SCIM create plants the same mark (an IdP that sends the group's name as externalId, or
    any client choosing to): a later create with that displayName and another externalId is not refused
    as a duplicate (409 uniqueness, as test_a_name_the_idp_already_created_is_still_refused expects) but
    silently takes the existing group over, rewriting its externalId and merging its members."""
    first = scim.create_group("Admins", externalId="Admins")
    again = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Admins", "externalId": "00gOTHER"})
    assert again.status_code == 409, (again.status_code, again.json)
    assert scim.get(f"/Groups/{first['id']}").json["externalId"] == "Admins"
