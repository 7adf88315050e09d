"""A GET of a group sends its members as they are read: a 100,000-member group never sits in memory.

Before, a GET of a 100,000-member group built its 17 MB body in memory first and raised a
worker's peak by about 95 MB; now the members are read 1,000 at a time in the request's read
transaction and written out as they come.
"""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc
import uuid

import pytest
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert

from audit import Actor
from identity import groups
from identity.db import Database
from identity.models import User
from scim.resources import member_to_wire, members_json
from tests.scim.client import GROUP, Scim, scim_for

MEMBERS = 10_000


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "BigCo")


def _users(db: Database, org_id: str, count: int) -> dict[str, str]:
    """Insert `count` users in bulk; return {id: display}."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [{"id": str(uuid.uuid4()), "org_id": org_id, "user_name": f"u{i}@big.test",
             "user_name_key": f"u{i}@big.test", "email": f"u{i}@big.test",
             "display_name": f"User {i}" if i % 2 else None, "active": True, "has_seat": False, "source": "scim",
             "attributes": {}, "created_at": now, "updated_at": now, "version": 1} for i in range(count)]
    with db.begin() as conn:
        conn.execute(insert(User.__table__), rows)
    return {row["id"]: row["display_name"] or row["user_name"] for row in rows}


def _group(db: Database, system: Actor, org_id: str, name: str, members: list[str], **attributes) -> str:
    with db.transaction() as session:
        return groups.create_group(session, system, org_id, display_name=name, member_ids=members,
                                   attributes=attributes or None).id


def _streamed(scim: Scim, path: str) -> tuple[dict, int, bool]:
    """GET `path` without buffering; return the parsed body, the peak of Python's allocations
    while it was sent, and whether it was streamed (sent without a Content-Length)."""
    response = scim.client.get(f"/scim/v2{path}", headers={"Authorization": f"Bearer {scim.token}"},
                               buffered=False)
    assert response.status_code == 200
    chunks: list[bytes] = []  # kept so that the body can be checked; taken off the peak below
    tracemalloc.start()
    try:
        for chunk in response.response:
            chunks.append(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        response.close()
    body = b"".join(chunks)
    return json.loads(body), peak - len(body), "Content-Length" not in response.headers


def test_a_big_group_is_sent_whole_while_its_members_are_read(scim: Scim, db: Database, system: Actor) -> None:
    users = _users(db, scim.org_id, MEMBERS)
    group_id = _group(db, system, scim.org_id, "Everyone", list(users))
    body, peak, streamed = _streamed(scim, f"/Groups/{group_id}")
    assert streamed
    base = "http://localhost/scim/v2"
    assert sorted(body["members"], key=lambda m: m["value"]) == \
        [member_to_wire(uid, users[uid], base) for uid in sorted(users)]
    assert body["id"] == group_id and body["displayName"] == "Everyone" and body["meta"]["version"] == 'W/"1"'
    # The body is about 1.7 MB; building it first took several times that. Streamed, what is
    # held at once beyond the body the test keeps is a batch of 1,000 members.
    assert peak < 1_000_000, peak


def test_a_page_of_groups_streams_each_groups_members(scim: Scim, db: Database, system: Actor) -> None:
    users = list(_users(db, scim.org_id, 2_500))
    first = _group(db, system, scim.org_id, "First", users[:2_100])
    second = _group(db, system, scim.org_id, "Second", users[2_000:])
    empty = _group(db, system, scim.org_id, "Empty", [])
    body, _, streamed = _streamed(scim, "/Groups?sortBy=displayName")
    assert streamed and body["totalResults"] == 3
    members = {g["id"]: {m["value"] for m in g["members"]} for g in body["Resources"]}
    assert members == {first: set(users[:2_100]), second: set(users[2_000:]), empty: set()}
    # What a POST /.search answers is read at once, and is the same.
    searched = scim.post("/Groups/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                             "sortBy": "displayName"})
    assert searched.status_code == 200 and "Content-Length" in searched.headers
    assert {g["id"]: {m["value"] for m in g["members"]} for g in searched.json["Resources"]} == members


def test_members_left_out_are_not_streamed(scim: Scim, db: Database, system: Actor) -> None:
    users = list(_users(db, scim.org_id, 3))
    group_id = _group(db, system, scim.org_id, "Few", users)
    for query in ("excludedAttributes=members", "attributes=displayName"):
        response = scim.get(f"/Groups/{group_id}?{query}")
        assert response.status_code == 200 and "Content-Length" in response.headers
        assert "members" not in response.json and response.json["displayName"] == "Few"
    listed = scim.get("/Groups?excludedAttributes=members")
    assert "Content-Length" in listed.headers and "members" not in listed.json["Resources"][0]
    assert {m["value"] for m in scim.get(f"/Groups/{group_id}?attributes=members").json["members"]} == set(users)


def test_an_attribute_that_looks_like_the_place_of_the_members_is_sent_as_it_is(
        scim: Scim, db: Database, system: Actor) -> None:
    users = list(_users(db, scim.org_id, 2))
    # The place-holder is NUL, a random nonce, the index, NUL: NUL itself is refused in any string
    # a client sends, and its JSON escape sent as text comes back escaped, so neither can match.
    tricky = "\\u0000" + "0" * 16 + ":0\\u0000"
    created = scim.post("/Groups", {"schemas": [GROUP], "displayName": "Tricky", "members": [{"value": u} for u in users],
                                    "x-note": tricky})
    assert created.status_code == 201, created.json
    body, _, streamed = _streamed(scim, f"/Groups/{created.json['id']}")
    assert streamed and body["x-note"] == tricky and {m["value"] for m in body["members"]} == set(users)


def test_the_read_transaction_ends_with_the_stream_even_when_the_client_goes_away(
        scim: Scim, db: Database, system: Actor) -> None:
    users = list(_users(db, scim.org_id, 3_000))
    group_id = _group(db, system, scim.org_id, "Many", users)
    headers = {"Authorization": f"Bearer {scim.token}"}
    whole = scim.client.get(f"/scim/v2/Groups/{group_id}", headers=headers, buffered=False)
    pieces = iter(whole.response)
    next(pieces)
    assert db.engine.pool.checkedout() == 1  # the stream reads in the request's read transaction
    for _ in pieces:
        pass
    whole.close()
    assert db.engine.pool.checkedout() == 0
    gone = scim.client.get(f"/scim/v2/Groups/{group_id}", headers=headers, buffered=False)
    next(iter(gone.response))
    gone.close()  # what the server does when the client hangs up mid-answer
    assert db.engine.pool.checkedout() == 0


@given(members=st.lists(st.tuples(st.text(), st.one_of(st.none(), st.text()))),
       base=st.sampled_from(["http://127.0.0.1:8000/scim/v2", 'https://idp.example/"odd\\path/é']))
def test_members_written_directly_are_what_json_dumps_writes(members: list[tuple[str, str | None]],
                                                             base: str) -> None:
    """Any text at all (quotes, backslashes, control characters, lone surrogates, emoji) comes out
    exactly as json.dumps writes each entry, so clients parse the same members."""
    expected = ", ".join(json.dumps(member_to_wire(uid, display, base)) for uid, display in members)
    assert members_json(members, base) == expected
