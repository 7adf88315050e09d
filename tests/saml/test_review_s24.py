"""Hostile review s24 of SAML SSO and account linking: each test fails on the code it was written against."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from audit import Actor
from identity.groups import create_group
from identity.models import IdpGroupMember, User
from tests.factories import provision
from tests.saml.conftest import Sso, configure
from tests.saml.idp import TestIdP

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"


def _sign_in(sso: Sso, name_id: str, email: str, **options: Any) -> Any:
    return sso.sp_login(name_id=name_id, name_id_format=PERSISTENT, attributes={"email": [email]}, **options)


def _me(sso: Sso) -> str | None:
    answer = sso.client.get("/me")
    return str((answer.get_json() or {})["id"]) if answer.status_code == 200 else None


def test_an_edited_email_does_not_take_a_linked_account_after_the_idp_entity_id_changes(
        sso: Sso, system: Actor) -> None:
    """DESIGN 5: the email attribute links at most once and never chooses an account afterwards.

    Ann is linked (persistent NameID P-ann). The org re-uploads its IdP's metadata, and the entity id
    is new (an Okta app made again, an Entra app moved to another tenant id URL): same keys, same
    users. Mallory, an IdP user who may edit their own email attribute, sets it to Ann's and signs in
    with their own persistent NameID: the lookup is keyed on the new entity id only, finds Ann
    unlinked there, and links Mallory's NameID to Ann's account.
    """
    ann = provision(sso.db, system, sso.org.org.id, "ann@acme.test")
    assert _sign_in(sso, "P-ann", "ann@acme.test").status_code == 303
    assert _me(sso) == ann.id
    sso.client.delete_cookie("session")
    moved = TestIdP("https://idp.example.test/metadata/v2", sso.idp.keys)
    configure(sso.db, sso.org.org.slug, moved)
    sso.idp = moved

    answer = _sign_in(sso, "P-mallory", "ann@acme.test")
    assert answer.status_code == 403, "Mallory's NameID was linked to Ann's account"


@pytest.mark.parametrize("name", ["Équipe Paris", "İnsan Kaynakları", "Engineering"])
def test_a_group_claim_by_name_finds_the_idps_group_whatever_its_letters(sso: Sso, system: Actor, name: str) -> None:
    """Okta's SAML groups claim is the groups' names; its SCIM pushes them with an externalId (the Okta
    group id). A member of a group named with a capital letter outside ASCII (French, Turkish: Human
    Resources is "İnsan Kaynakları") must sign in and be a member of that group, as with "Engineering"."""
    with sso.db.transaction() as session:
        group = create_group(session, system, sso.org.org.id, display_name=name, external_id="00g-okta-group-id")
        group_id = group.id
    answer = sso.sp_login(name_id="gus@acme.test", attributes={"groups": [name]})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    with sso.db.reading() as session:
        gus = session.scalars(select(User).where(User.user_name == "gus@acme.test")).one()
        assert set(session.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.user_id == gus.id))) == \
            {group_id}


LONG_VALUES: dict[str, dict[str, Any]] = {
    # SAML core 2.0 puts no bound on an unspecified NameID or a SessionIndex; python3-saml none either.
    "unspecified NameID of 600 characters": {
        "name_id": "u" * 600, "name_id_format": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
        "attributes": {"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": ["gus@acme.test"]}},
    "persistent NameID of 600 characters": {
        "name_id": "P" * 600, "name_id_format": PERSISTENT, "attributes": {"email": ["gus@acme.test"]}},
    "SessionIndex of 300 characters": {"name_id": "gus@acme.test", "session_index": "_" + "s" * 300},
    "Assertion ID of 300 characters": {"name_id": "gus@acme.test", "assertion_id": "_" + "a" * 300},
    # A JIT member's given name from the IdP (users.given_name is VARCHAR(200)).
    "given name of 201 characters": {"name_id": "gus@acme.test", "attributes": {"firstName": ["g" * 201]}},
    # Entra allows group display names of 256 characters, and can send names as the groups claim.
    "group name of 256 characters": {"name_id": "gus@acme.test", "attributes": {"groups": ["g" * 256]}},
}


@pytest.mark.parametrize("kind", list(LONG_VALUES))
def test_a_long_signed_value_is_answered_as_on_sqlite_not_with_a_500(sso: Sso, kind: str) -> None:
    """SQLite signs these in (303; the group name: a 400 whose page blames "characters"). PostgreSQL's
    bounded columns (sso_sessions.name_id VARCHAR(512), session_index VARCHAR(256),
    saml_seen_assertions.assertion_id VARCHAR(256), users.given_name VARCHAR(200), idp_groups.external_id
    VARCHAR(255)) raise DataError: an unaudited 500, the assertion and the request not used up.
    Either answer the same on both, or refuse with a page."""
    answer = sso.sp_login(**LONG_VALUES[kind])
    assert answer.status_code < 500, answer.get_data(as_text=True)


def test_an_anonymous_login_with_a_long_next_path_is_not_a_500(sso: Sso) -> None:
    """Anybody may open /saml/<org>/login?next=...: the path is kept as the pending request's RelayState,
    a VARCHAR(2048) column. 2,100 characters fit in a request line (gunicorn allows 4,094): SQLite
    keeps them and redirects; PostgreSQL raises DataError, an anonymous 500 on demand. (SAML bindings
    2.0 section 3.4.3 also bounds a RelayState at 80 bytes: the IdP may refuse a longer one.)"""
    answer = sso.client.get(f"/saml/{sso.org.org.slug}/login", query_string={"next": "/" + "a" * 2100})
    assert answer.status_code < 500, answer.get_data(as_text=True)
