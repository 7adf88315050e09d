"""One key for userName, email and NameID (NFC, then case folding), the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from audit import Actor
from identity import user_profile, users
from identity.db import Database
from identity.errors import Conflict, InvalidValue
from identity.models import User, UserEmail
from identity.names import checked_address, name_key
from identity.orgs import NewOrg
from identity.service import run
from tests.factories import actions, provision

COMPOSED = "\u00c5SA@x.com"  # Å as one code point
DECOMPOSED = "A\u030aSA@x.com"  # A, then a combining ring above

UNSAFE = [
    pytest.param("\u202eann@acme.test", id="right-to-left override"),
    pytest.param("ann\u200b@acme.test", id="zero width space"),
    pytest.param("ann\u2066@acme.test", id="left-to-right isolate"),
    pytest.param("ann\x07@acme.test", id="control character"),
    pytest.param("ann\u2028@acme.test", id="line separator"),
]


@pytest.mark.parametrize(("one", "other"), [
    (COMPOSED, DECOMPOSED), (DECOMPOSED, "\u00e5sa@X.COM"), ("Stra\u00dfe", "STRASSE"), ("\u01f0", "J\u030c"),
])
def test_equal_names_have_one_key(one: str, other: str) -> None:
    assert name_key(one) == name_key(other)


def test_composed_and_decomposed_names_are_one_user(db: Database, acme: NewOrg, system: Actor) -> None:
    asa = provision(db, system, acme.org.id, DECOMPOSED)
    with pytest.raises(Conflict):
        run(db, system, users.provision_user, acme.org.id, user_name=COMPOSED, source="scim")
    with db.reading() as session:
        assert users.find_by_user_name(session, acme.org.id, COMPOSED) is not None
        assert users.find_by_user_name(session, acme.org.id, "\u00e5sa@x.COM").id == asa.id
        assert users.find_by_user_name_or_removed(session, acme.org.id, COMPOSED)[0].id == asa.id
    provision(db, system, acme.org.id, "ASA@x.com")  # the ring is not dropped: another name


def test_case_folding_is_the_databases_own_on_neither(db: Database, acme: NewOrg, system: Actor) -> None:
    # lower('STRASSE') is 'strasse', lower('Straße') is 'straße' on both databases: only the key is one name.
    provision(db, system, acme.org.id, "Stra\u00dfe")
    with pytest.raises(Conflict):
        run(db, system, users.provision_user, acme.org.id, user_name="STRASSE", source="scim")
    with db.reading() as session:
        assert session.scalars(select(User.user_name_key).where(User.user_name == "Stra\u00dfe")).one() == "strasse"


def test_a_rename_moves_the_key(db: Database, acme: NewOrg, system: Actor) -> None:
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    run(db, system, user_profile.update_profile, acme.org.id, ann.id, {"user_name": "STRASSE@acme.test"})
    with db.reading() as session:
        assert users.find_by_user_name(session, acme.org.id, "stra\u00dfe@ACME.test").id == ann.id
        assert users.find_by_user_name(session, acme.org.id, "ann@acme.test") is None
    provision(db, system, acme.org.id, "ann@acme.test")  # the old name is free again


def test_email_rows_hold_the_address_key(db: Database, acme: NewOrg, system: Actor) -> None:
    user = provision(db, system, acme.org.id, "asa", email=DECOMPOSED)
    with db.reading() as session:
        assert session.scalars(select(UserEmail.value).where(UserEmail.user_id == user.id)).all() == [
            name_key(COMPOSED)]


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_characters_in_a_user_name_are_refused(db: Database, acme: NewOrg, system: Actor, value: str) -> None:
    before = actions(db, acme.org.id)
    with pytest.raises(InvalidValue) as refused:
        run(db, system, users.provision_user, acme.org.id, user_name=value, source="scim")
    assert refused.value.context == {"field": "userName"}
    assert "U+" in refused.value.message
    assert actions(db, acme.org.id) == before


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_characters_in_an_email_are_refused(db: Database, acme: NewOrg, system: Actor, value: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        run(db, system, users.provision_user, acme.org.id, user_name="ann", email=value, source="scim")
    assert refused.value.context == {"field": "email"}
    with pytest.raises(InvalidValue) as refused:
        run(db, system, users.provision_user, acme.org.id, user_name="ann", source="scim",
            attributes={"emails": [{"value": value, "type": "home"}]})
    assert refused.value.context == {"field": "emails"}
    ann = provision(db, system, acme.org.id, "ann@acme.test")
    for change in ({"user_name": value}, {"email": value}, {"attributes": {"emails": [{"value": value}]}}):
        with pytest.raises(InvalidValue):
            run(db, system, user_profile.update_profile, acme.org.id, ann.id, change)


@pytest.mark.parametrize("typed,kept", [
    (" dora@acme.test ", "dora@acme.test"), ("dora.b+invites@mail.acme.test", "dora.b+invites@mail.acme.test"),
    ("jörg@büro.test", "jörg@büro.test"), ("root@localhost", "root@localhost"),
])
def test_an_invitees_address_is_one_address(typed: str, kept: str) -> None:
    assert checked_address(typed) == kept


@pytest.mark.parametrize("typed", [
    None, 5, "", " @ ", "dora", "dora@", "@acme.test", "dora@@acme.test", "a@b@acme.test",
    "dora@acme.test, eve@evil.test", "dora@acme.test;eve@evil.test", "dora eve@acme.test", "dora\u00a0@acme.test",
    "Dora <dora@acme.test>", '"eve@evil.test"@acme.test', "dora@acme.test (Dora)", "undisclosed:dora@acme.test;",
    "dora@acme..test", "dora@.acme.test", "dora@acme.test.", "dora@[127.0.0.1]", "ann\u202e@acme.test",
])
def test_text_that_is_not_one_address_is_refused_naming_the_field(typed: object) -> None:
    """What a To header would read as several addresses, a display name, a comment or a group, or as
    no address at all (identity.mail sends the invitation to exactly this text)."""
    with pytest.raises(InvalidValue) as refused:
        checked_address(typed, "email")
    assert refused.value.context["field"] == "email"
