"""The userName claim and the NameID naming two different live members: refused `ambiguous_user`, never
the claim's member (a review found such an assertion signed in as the owner)."""

from __future__ import annotations

from audit import Actor
from tests.factories import provision
from tests.saml.conftest import Sso

CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def test_the_username_claim_does_not_override_a_nameid_that_names_another_live_member(sso: Sso, system: Actor) -> None:
    """saml.service._lookup lets the userName claim (default `.../claims/name`, on for every connection,
    also those whose IdP never meant it as an identifier) decide before the Subject's NameID: an assertion
    whose NameID names Mallory, a live member, signs in as whoever the attribute names, here the org's
    owner. Where the Subject and the claim name two different live members, the sign-in must not become
    the claim's member (sign in the NameID's, or refuse as ambiguous)."""
    provision(sso.db, system, sso.org.org.id, "mallory@acme.test")
    answer = sso.sp_login(name_id="mallory@acme.test", name_id_format=EMAIL, attributes={
        f"{CLAIMS}/emailaddress": ["mallory@acme.test"], f"{CLAIMS}/name": ["owner@acme.test"]})
    me = sso.client.get("/me").get_json(silent=True) or {}
    assert me.get("id") != sso.org.owner.id, "Mallory's assertion signed in as the owner"
    assert answer.status_code == 403 and me.get("id") is None  # refused `ambiguous_user`
