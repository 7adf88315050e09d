"""Every list's `?limit=` (README: "1 to 500, default 100"; query strings "never coerced or
ignored"): one outside the range is a 400 naming `limit`, never a page clamped to 1 or 500, which a
client that stops at a short page would read as the end of the list. The lists are those the
OpenAPI document gives a `limit` of at most 500 (the audit log's own goes to 1,000)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_console_forms import sign_in
from tests.identity.test_wallet_usage import World, world  # noqa: F401  (world: the fixture)


def lists(client: FlaskClient, acme: NewOrg, world: World) -> list[str]:  # noqa: F811
    """The path of every operation whose `limit` the document bounds at 500, its ids filled in."""
    document: dict[str, Any] = client.get("/openapi.json").get_json()
    ids = {"org": acme.org.slug, "team_id": acme.default_team_id, "user_id": world.member_id}
    found = []
    for path, operations in document["paths"].items():
        query = [p for p in operations.get("get", {}).get("parameters", []) if p.get("in") == "query"]
        if any(p["name"] == "limit" and p["schema"].get("maximum") == 500 for p in query):
            found.append(path.format(**ids))
    return found


@pytest.mark.parametrize("limit", ["0", "-1", "501"])
def test_every_list_refuses_a_limit_out_of_range(client: FlaskClient, acme: NewOrg, world: World,  # noqa: F811
                                                 limit: str) -> None:
    paths = lists(client, acme, world)
    assert len(paths) >= 10 and f"/api/v1/orgs/{acme.org.slug}/members" in paths, paths
    for path in paths:
        answer = client.get(f"{path}?limit={limit}", headers=world.owner)
        body = answer.get_json()
        assert (answer.status_code, body.get("field")) == (400, "limit"), (path, body)
        assert "1 to 500" in body["detail"]


def test_every_list_takes_the_ends_of_the_range(client: FlaskClient, acme: NewOrg, world: World) -> None:  # noqa: F811
    for path in lists(client, acme, world):
        for limit in ("1", "500"):
            answer = client.get(f"{path}?limit={limit}", headers=world.owner)
            assert answer.status_code == 200, (path, limit, answer.get_json())


def test_the_console_pages_without_reading_a_limit(client: FlaskClient, db: Database, acme: NewOrg) -> None:
    """The console's own links carry `after` only, its page sizes are its own: a `limit` in its
    address is not read, so not refused."""
    sign_in(client, db, acme.owner.id)
    for page in ("/console/billing", "/console/members", "/console/teams"):
        assert client.get(f"{page}?limit=0").status_code == 200, page
