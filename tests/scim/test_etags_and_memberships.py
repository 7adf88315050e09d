"""ETags follow memberships (RFC 7644 section 3.14): a user's moves when their groups do (RFC 7643
section 4.1.2: `groups` is part of the User), without writing the member's row; a group's moves
when a member of it is deleted or shown under a new name. For If-None-Match and If-Match alike."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from identity.db import Database
from tests.scim.client import USER, Scim, scim_for


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme")


def _tag(scim: Scim, user_id: str) -> str:
    read = scim.get(f"/Users/{user_id}")
    assert read.status_code == 200
    assert read.headers["ETag"] == read.json["meta"]["version"]
    return str(read.headers["ETag"])


def _group_changes(scim: Scim, user_id: str) -> list[tuple[str, Any]]:
    """Each way a user's groups change without the user's own resource being written."""
    group = scim.create_group("Ops")
    path = f"/Groups/{group['id']}"
    return [
        ("joined", lambda: scim.patch(path, [{"op": "add", "path": "members", "value": [{"value": user_id}]}])),
        ("renamed", lambda: scim.patch(path, [{"op": "replace", "path": "displayName", "value": "Operations"}])),
        ("left", lambda: scim.patch(path, [{"op": "remove", "path": f'members[value eq "{user_id}"]'}])),
    ]


def test_a_change_to_the_users_groups_makes_the_etag_stale(scim: Scim) -> None:
    user = scim.create_user("nina@example.com")
    path = f"/Users/{user['id']}"
    first = _tag(scim, user["id"])
    for change, run in _group_changes(scim, user["id"]):
        before = _tag(scim, user["id"])
        assert run().status_code in (200, 204), change
        after = _tag(scim, user["id"])
        assert after != before, change
        assert scim.get(path, **{"If-None-Match": before}).status_code == 200, change
        assert scim.get(path, **{"If-None-Match": after}).status_code == 304, change
    # Out of every group again: the representation is the first one, so its tag is too (weak ETag).
    assert _tag(scim, user["id"]) == first == user["meta"]["version"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_if_match_with_the_tag_from_before_a_group_change_is_412_and_changes_nothing(scim: Scim, method: str) -> None:
    user = scim.create_user("olga@example.com")
    path = f"/Users/{user['id']}"
    stale = _tag(scim, user["id"])
    join = _group_changes(scim, user["id"])[0][1]
    assert join().status_code in (200, 204)
    current = _tag(scim, user["id"])

    def send(tag: str) -> int:
        if method == "PUT":
            body = {"schemas": [USER], "userName": "olga@example.com", "displayName": "Olga"}
            return scim.put(path, body, **{"If-Match": tag}).status_code
        if method == "PATCH":
            change = [{"op": "replace", "path": "displayName", "value": "Olga"}]
            return scim.patch(path, change, **{"If-Match": tag}).status_code
        return scim.delete(path, **{"If-Match": tag}).status_code

    assert send(stale) == 412
    assert _tag(scim, user["id"]) == current  # nothing written
    assert send(current) in (200, 204)


def test_list_pages_and_root_search_show_the_same_version_as_the_etag(scim: Scim) -> None:
    user = scim.create_user("pia@example.com")
    assert _group_changes(scim, user["id"])[0][1]().status_code in (200, 204)
    tag = _tag(scim, user["id"])
    listed = scim.get('/Users?filter=userName eq "pia@example.com"').json["Resources"][0]
    assert listed["meta"]["version"] == tag
    no_groups = scim.get('/Users?filter=userName eq "pia@example.com"&excludedAttributes=groups')
    assert no_groups.json["Resources"][0]["meta"]["version"] == tag
    assert "groups" not in no_groups.json["Resources"][0]
    searched = scim.post("/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                      "filter": 'userName eq "pia@example.com"'}).json["Resources"]
    assert [r["meta"]["version"] for r in searched if r["id"] == user["id"]] == [tag]
    projected = scim.get(f"/Users/{user['id']}?attributes=userName")
    assert projected.headers["ETag"] == tag and "groups" not in projected.json


def test_a_members_deletion_makes_each_of_their_groups_etag_stale(scim: Scim) -> None:
    leaving, staying = scim.create_user("quinn@example.com"), scim.create_user("rosa@example.com")
    both = [scim.create_group(name, [leaving["id"], staying["id"]]) for name in ("Ops", "Sales")]
    other = scim.create_group("Legal", [staying["id"]])
    before = {g["id"]: scim.get(f"/Groups/{g['id']}").headers["ETag"] for g in [*both, other]}
    assert scim.delete(f"/Users/{leaving['id']}").status_code == 204
    for group in both:
        path = f"/Groups/{group['id']}"
        read = scim.get(path, **{"If-None-Match": before[group["id"]]})
        assert read.status_code == 200 and [m["value"] for m in read.json["members"]] == [staying["id"]]
        assert read.json["meta"]["version"] == read.headers["ETag"] != before[group["id"]]
        rename = [{"op": "replace", "path": "displayName", "value": f"{group['displayName']} 2"}]
        assert scim.patch(path, rename, **{"If-Match": before[group["id"]]}).status_code == 412
        assert scim.patch(path, rename, **{"If-Match": read.headers["ETag"]}).status_code in (200, 204)
    assert scim.get(f"/Groups/{other['id']}").headers["ETag"] == before[other["id"]]  # not a member: unchanged


@pytest.mark.parametrize(("change", "moves"), [
    ([{"op": "replace", "path": "displayName", "value": "Sam Stone"}], True),
    ([{"op": "replace", "path": "userName", "value": "sam.stone@example.com"}], True),  # no displayName: shown by userName
    ([{"op": "replace", "path": "name.givenName", "value": "Sam"}], False),  # not shown in a group
])
def test_a_members_new_name_makes_each_of_their_groups_etag_stale(
        scim: Scim, change: list[dict[str, Any]], moves: bool) -> None:
    member, other = scim.create_user("sam@example.com"), scim.create_user("tess@example.com")
    theirs, not_theirs = scim.create_group("Ops", [member["id"], other["id"]]), scim.create_group("Legal", [other["id"]])
    before = {g["id"]: scim.get(f"/Groups/{g['id']}").headers["ETag"] for g in (theirs, not_theirs)}
    assert scim.patch(f"/Users/{member['id']}", change).status_code in (200, 204)
    read = scim.get(f"/Groups/{theirs['id']}", **{"If-None-Match": before[theirs["id"]]})
    if moves:
        assert read.status_code == 200 and read.headers["ETag"] != before[theirs["id"]]
        shown = {m["value"]: m["display"] for m in read.json["members"]}
        assert shown[member["id"]] == change[0]["value"]
        rename = [{"op": "replace", "path": "displayName", "value": "Ops 2"}]
        assert scim.patch(f"/Groups/{theirs['id']}", rename, **{"If-Match": before[theirs["id"]]}).status_code == 412
    else:
        assert read.status_code == 304
    assert scim.get(f"/Groups/{not_theirs['id']}").headers["ETag"] == before[not_theirs["id"]]
