"""userName and emails over SCIM compare through one key (NFC, case-folded), and refuse invisible characters."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.factories import counts
from tests.scim.client import USER, Scim, scim_for

COMPOSED = "\u00c5SA@x.com"
DECOMPOSED = "A\u030aSA@x.com"


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def _filter(scim: Scim, text: str) -> list[str]:
    answer = scim.get(f"/Users?filter={quote(text)}")
    assert answer.status_code == 200, answer.json
    return [resource["id"] for resource in answer.json["Resources"]]


@pytest.mark.parametrize(("first", "second"), [(DECOMPOSED, COMPOSED), (COMPOSED, DECOMPOSED),
                                               ("Stra\u00dfe@x.com", "STRASSE@x.com")])
def test_one_name_in_two_spellings_is_one_user(scim: Scim, db: Database, first: str, second: str) -> None:
    created = scim.create_user(first)
    before = counts(db)
    answer = scim.post("/Users", {"schemas": [USER], "userName": second})
    assert (answer.status_code, answer.json["scimType"]) == (409, "uniqueness")
    assert counts(db) == before
    assert _filter(scim, f'userName eq "{second}"') == [created["id"]]
    assert _filter(scim, f'emails.value eq "{second}"') == [created["id"]]
    assert _filter(scim, f'emails[type eq "work" and value eq "{second.lower()}"]') == [created["id"]]
    assert scim.get(f"/Users/{created['id']}").json["userName"] == first  # shown as it was sent


def test_user_name_filters_other_than_eq_use_the_key_too(scim: Scim) -> None:
    created = scim.create_user("Stra\u00dfe@x.com")
    assert _filter(scim, 'userName sw "STRASS"') == [created["id"]]
    assert _filter(scim, 'userName co "SSE@"') == [created["id"]]
    assert _filter(scim, 'userName ne "strasse@x.com"') == [u for u in _filter(scim, "userName pr")
                                                            if u != created["id"]]


UNSAFE = [
    pytest.param("\u202eann@acme.test", id="right-to-left override"),
    pytest.param("ann\u200b@acme.test", id="zero width space"),
    pytest.param("ann\x01@acme.test", id="control character"),
]


@pytest.mark.parametrize("value", UNSAFE)
def test_unsafe_characters_are_400_invalid_value(scim: Scim, db: Database, value: str) -> None:
    before = counts(db)
    for body in ({"schemas": [USER], "userName": value},
                 {"schemas": [USER], "userName": "ann@acme.test", "emails": [{"value": value, "type": "work"}]}):
        answer = scim.post("/Users", body)
        assert (answer.status_code, answer.json["scimType"]) == (400, "invalidValue"), answer.json
        assert "U+" in answer.json["detail"]
    assert counts(db) == before
    user = scim.create_user("bob@acme.test")
    for op in ({"op": "replace", "path": "userName", "value": value},
               {"op": "add", "path": "emails", "value": [{"value": value, "type": "home"}]}):
        answer = scim.patch(f"/Users/{user['id']}", [op])
        assert (answer.status_code, answer.json["scimType"]) == (400, "invalidValue"), answer.json
    assert scim.get(f"/Users/{user['id']}").json["userName"] == "bob@acme.test"
