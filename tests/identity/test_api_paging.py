"""Every list under /api/v1 pages with `limit` and `after` (the `next` of the previous page) to its end.

Each walk, two rows a page, must give every row exactly once and in the order one big page gives,
even when rows share their creation time (the id breaks the tie); a cursor not made by us is 400.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import update

from audit import Actor, clock
from identity import invitations, keys, mappings, scim_credentials, teams
from identity.db import Database
from identity.models import GroupMapping, Team
from identity.orgs import NewOrg
from identity.wallet_models import TopUpRequest
from tests.factories import provision

# list path -> the member of the answer that holds its rows
LISTS = {"members": "members", "teams": "teams", "invitations": "invitations", "group-mappings": "group_mappings",
         "scim-tokens": "scim_tokens", "scim-clients": "scim_clients", "audit-checkpoints": "checkpoints",
         "api-keys": "keys"}
ROWS = 5  # of each kind, besides what the org starts with


@pytest.fixture
def owner_key(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    """Acme with ROWS of every listed thing, and its owner's admin key."""
    org_id = acme.org.id
    for n in range(ROWS):
        provision(db, system, org_id, f"member{n}@acme.test")
    with db.transaction() as session:
        for n in range(ROWS):
            teams.create_team(session, system, org_id, f"Team {n}")
            invitations.invite(session, system, org_id, email=f"invitee{n}@acme.test")
            mappings.create_mapping(session, system, org_id, group_external_id=f"group-{n}", org_role="viewer")
            scim_credentials.create_scim_token(session, system, org_id, name=f"token {n}")
            scim_credentials.create_scim_client(session, system, org_id, name=f"client {n}")
            keys.create_api_key(session, system, org_id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                name=f"key {n}", scopes=["inference"])
        secret = keys.create_api_key(session, system, org_id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                     name="admin", scopes=["admin"]).secret
    with db.transaction() as session:  # rows made at one instant: only the id orders them
        moment = session.get_one(Team, acme.default_team_id).created_at
        session.execute(update(Team).where(Team.org_id == org_id).values(created_at=moment))
        session.execute(update(GroupMapping).where(GroupMapping.org_id == org_id).values(created_at=moment))
    return {"Authorization": f"Bearer {secret}"}


def _get(client: FlaskClient, url: str, headers: dict[str, str], **query: Any) -> Any:
    response = client.get(url, query_string=query, headers=headers)
    assert response.status_code == 200, response.json
    return response.json


@pytest.mark.parametrize("path", sorted(LISTS))
def test_every_list_walks_to_its_end_two_at_a_time(client: FlaskClient, acme: NewOrg, owner_key: dict[str, str],
                                                   path: str) -> None:
    url, member = f"/api/v1/orgs/{acme.org.slug}/{path}", LISTS[path]
    if path == "audit-checkpoints":
        for _ in range(ROWS):
            assert client.post(url, headers=owner_key).status_code == 201
    _walk(client, url, member, owner_key)


def _walk(client: FlaskClient, url: str, member: str, headers: dict[str, str], *, key: str = "id") -> None:
    """Walk the list two rows a page: every row once, in the order of one big page; `next` null on the
    last page, also when that page is exactly full."""
    whole = _get(client, url, headers, limit=500)
    assert whole["next"] is None and len(whole[member]) >= ROWS
    assert _get(client, url, headers, limit=len(whole[member]))["next"] is None
    walked, after, pages = [], {}, 0
    while True:
        page = _get(client, url, headers, limit=2, **after)
        walked += page[member]
        pages += 1
        assert 0 < len(page[member]) <= 2 and pages <= len(whole[member])
        if page["next"] is None:
            break
        after = {"after": page["next"]}
    assert [row[key] for row in walked] == [row[key] for row in whole[member]]


def _topup_requests(db: Database, acme: NewOrg, count: int) -> None:
    """`count` requests of the default team, three of every four made at one instant (the id breaks the tie)."""
    now = clock.now()
    with db.transaction() as session:
        session.add_all(TopUpRequest(id=str(uuid.uuid4()), org_id=acme.org.id, team_id=acme.default_team_id,
                                     amount_micros=1000, threshold_micros=10, balance_micros=5, status="delivered",
                                     attempts=1, created_at=now - dt.timedelta(minutes=n // 4)) for n in range(count))


@pytest.mark.parametrize("path,member", [("limits", "limits"), ("topup-requests", "topup_requests")])
def test_a_teams_wallet_lists_walk_to_their_end_two_at_a_time(client: FlaskClient, db: Database, system: Actor,
                                                              acme: NewOrg, owner_key: dict[str, str], path: str,
                                                              member: str) -> None:
    """A team's spend limits were one unbounded read that refused ?limit=, and its top-up requests
    stopped at 100 with no `next`: they page as every list does."""
    url = f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}/wallet/{path}"
    if path == "limits":
        for n in range(ROWS):
            user = provision(db, system, acme.org.id, f"limited{n}@acme.test")
            response = client.put(f"{url}/members/{user.id}", headers=owner_key, json={"limit_micros": 1000 + n})
            assert response.status_code == 200, response.json
    else:
        _topup_requests(db, acme, ROWS + 1)
    _walk(client, url, member, owner_key, key="subject_id" if path == "limits" else "id")


def test_a_teams_topup_requests_go_on_past_the_first_hundred(client: FlaskClient, db: Database, acme: NewOrg,
                                                            owner_key: dict[str, str]) -> None:
    """The 101st request, the oldest one the operator may still owe, is on the next page."""
    _topup_requests(db, acme, 101)
    url = f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}/wallet/topup-requests"
    first = _get(client, url, owner_key)
    rest = _get(client, url, owner_key, after=first["next"])
    assert (len(first["topup_requests"]), len(rest["topup_requests"]), rest["next"]) == (100, 1, None)
    assert len({row["id"] for row in first["topup_requests"] + rest["topup_requests"]}) == 101


def test_the_ledgers_next_is_null_on_its_last_page_even_when_it_is_full(client: FlaskClient, acme: NewOrg,
                                                                        owner_key: dict[str, str]) -> None:
    """The ledger pages back with ?before=<next>; a ledger of exactly `limit` entries has no next page."""
    url = f"/api/v1/orgs/{acme.org.slug}/teams/{acme.default_team_id}/wallet"
    for reference in ("inv-1", "inv-2"):
        assert client.post(f"{url}/top-ups", headers=owner_key,
                           json={"amount_micros": 1000, "reference": reference}).status_code == 201
    whole = _get(client, f"{url}/ledger", owner_key, limit=2)
    first = _get(client, f"{url}/ledger", owner_key, limit=1)
    rest = _get(client, f"{url}/ledger", owner_key, limit=1, before=first["next"])
    assert (len(whole["entries"]), whole["next"], rest["next"]) == (2, None, None)
    assert [e["id"] for e in first["entries"] + rest["entries"]] == [e["id"] for e in whole["entries"]]


def _encoded(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize("path", ["teams", "invitations", "group-mappings", "scim-tokens", "scim-clients",
                                  "seat-charges"])
@pytest.mark.parametrize("cursor", [
    "junk!", "bm90IGpzb24", _encoded({"after": 1}), _encoded(["2026-01-01T00:00:00+00:00"]),
    _encoded(["2026-01-01T00:00:00", "abc"]), _encoded(["yesterday", "abc"]), _encoded([1, "abc"]),
    _encoded(["2026-01-01T00:00:00+00:00", "a b"]), _encoded(["2026-01-01T00:00:00+00:00", "x" * 65]),
])
def test_a_cursor_we_did_not_make_is_refused(client: FlaskClient, acme: NewOrg, owner_key: dict[str, str],
                                             path: str, cursor: str) -> None:
    response = client.get(f"/api/v1/orgs/{acme.org.slug}/{path}", query_string={"after": cursor}, headers=owner_key)
    assert response.status_code == 400, response.json
    assert response.content_type == "application/problem+json" and response.json["field"] == "after"


@pytest.mark.parametrize("path", ["teams", "invitations", "group-mappings", "scim-tokens", "scim-clients"])
def test_a_repeated_after_or_an_unknown_parameter_is_refused(client: FlaskClient, acme: NewOrg,
                                                             owner_key: dict[str, str], path: str) -> None:
    url = f"/api/v1/orgs/{acme.org.slug}/{path}"
    first = _get(client, url, owner_key, limit=1)["next"]
    assert client.get(f"{url}?after={first}&after={first}", headers=owner_key).status_code == 400
    assert client.get(f"{url}?limt=1", headers=owner_key).status_code == 400
