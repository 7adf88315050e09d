"""SSO set up before SCIM (the order most admins take): the groups a SAML sign-in's claims made are
adopted by the IdP's SCIM create of the same group, not duplicated (Entra: the claim is the group's
object id, SCIM's externalId) nor refused as a duplicate name (Okta: the claim is the group's name).
Both failed before: Entra's create made a second group with the same externalId, which later
sign-ins picked between by row order; Okta's was 409 `uniqueness`, so its group push failed."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity import group_claims, group_membership, mappings, users
from identity.db import Database
from tests.factories import actions, provision
from tests.scim.client import GROUP, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def _signed_in_with_claims(db: Database, system: Actor, scim: Scim, email: str, claims: list[str]) -> str:
    user = provision(db, system, scim.org_id, email)
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, scim.org_id, user.id, claims)
    return user.id


def _groups(scim: Scim) -> list[dict[str, object]]:
    return list(scim.get("/Groups?count=100").json["Resources"])


@pytest.mark.parametrize("idp", ["entra", "okta"])
def test_the_scim_create_adopts_the_group_a_claim_made(scim: Scim, db: Database, system: Actor, idp: str) -> None:
    claim, external_id = ("2f5c1e0a-77b4-4c55-9a51-0d7c3c1f9e10",) * 2 if idp == "entra" else ("Engineering", "00g1")
    ann = _signed_in_with_claims(db, system, scim, "ann@acme.test", [claim])
    bob = scim.create_user("bob@acme.test")["id"]
    made = _groups(scim)
    assert [g["displayName"] for g in made] == [claim]

    created = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Engineering", "externalId": external_id,
                                    "members": [{"value": bob}]})
    assert created.status_code == 201, created.json
    assert created.json["id"] == made[0]["id"]
    assert created.json["displayName"] == "Engineering" and created.json["externalId"] == external_id
    assert sorted(m["value"] for m in created.json["members"]) == sorted([ann, bob])
    assert [g["id"] for g in _groups(scim)] == [made[0]["id"]]
    assert "group.updated" in actions(db, scim.org_id)

    # A later sign-in with the same claim keeps Ann in that one group.
    with db.transaction() as session:
        group_claims.apply_user_groups(session, system, scim.org_id, ann, [claim])
    with db.reading() as session:
        assert sorted(group_membership.member_ids(session, made[0]["id"])) == sorted([ann, bob])


def test_a_name_the_idp_already_created_is_still_refused(scim: Scim) -> None:
    assert scim.create_group("Sales", externalId="00g2")["externalId"] == "00g2"
    again = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Sales", "externalId": "00g3"})
    assert again.status_code == 409 and again.json["scimType"] == "uniqueness"


def test_a_rule_for_the_idps_group_applies_to_the_members_its_claim_brought(scim: Scim, db: Database,
                                                                            system: Actor) -> None:
    with db.transaction() as session:
        mappings.create_mapping(session, system, scim.org_id, group_external_id="00g1", org_role="admin")
    ann = _signed_in_with_claims(db, system, scim, "ann@acme.test", ["Engineering"])
    with db.reading() as session:
        assert users.org_role(session, ann) != "admin"  # the claim's group is not the rule's (yet)
    created = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Engineering", "externalId": "00g1"})
    assert created.status_code == 201
    with db.reading() as session:
        assert users.org_role(session, ann) == "admin"
