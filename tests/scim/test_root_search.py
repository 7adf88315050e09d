"""POST /scim/v2/.search at the root: Users and Groups searched together (RFC 7644 section 3.4.3),
filtered, sorted and paged across both."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import Scim, scim_for

SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    found = scim_for(db, client, system, "Acme")
    ann = found.create_user("ann@acme.test", displayName="Ann")["id"]
    found.create_user("cid@acme.test", displayName="Cid")
    found.create_user("eve@acme.test", displayName="eve")
    found.create_group("Bees", [ann])
    found.create_group("Dogs")
    return found


def _search(scim: Scim, **body: Any) -> dict[str, Any]:
    response = scim.post("/.search", {"schemas": [SEARCH], **body})
    assert response.status_code == 200, response.json
    assert response.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
    found: dict[str, Any] = response.json
    return found


def _names(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["meta"]["resourceType"], r["displayName"]) for r in page["Resources"]]


def test_sorted_and_paged_across_users_and_groups(scim: Scim) -> None:
    everything = _search(scim, filter='displayName pr', sortBy="displayName")
    assert everything["totalResults"] == 5
    assert _names(everything) == [("User", "Ann"), ("Group", "Bees"), ("User", "Cid"), ("Group", "Dogs"),
                                  ("User", "eve")]
    second = _search(scim, filter='displayName pr', sortBy="displayName", sortOrder="descending",
                     startIndex=2, count=2)
    assert second["totalResults"] == 5 and second["startIndex"] == 2 and second["itemsPerPage"] == 2
    assert _names(second) == [("Group", "Dogs"), ("User", "Cid")]


def test_without_a_filter_every_user_and_group(scim: Scim) -> None:
    page = _search(scim, count=100)
    kinds = [r["meta"]["resourceType"] for r in page["Resources"]]
    assert page["totalResults"] == 6 and kinds.count("User") == 4 and kinds.count("Group") == 2  # the owner too


def test_an_attribute_one_type_lacks_matches_none_of_that_type(scim: Scim) -> None:
    users = _search(scim, filter='userName sw "ann"')
    assert _names(users) == [("User", "Ann")]
    groups = _search(scim, filter='members pr', attributes=["displayName", "members.value"])
    assert [r["displayName"] for r in groups["Resources"]] == ["Bees"]
    assert set(groups["Resources"][0]) == {"id", "schemas", "displayName", "members"}
    by_type = _search(scim, filter='meta.resourceType eq "Group"', sortBy="userName")
    assert by_type["totalResults"] == 2


def test_bad_filters_are_400(scim: Scim) -> None:
    for bad in ('nosuch eq "x"', 'displayName eq'):
        response = scim.post("/.search", {"schemas": [SEARCH], "filter": bad})
        assert response.status_code == 400 and response.json["scimType"] == "invalidFilter", bad
    assert scim.post("/.search", [1]).status_code == 400
