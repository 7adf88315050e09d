"""Reading the log newest first (the console's default order): pages walk down the chain without a gap
or a repeat, filters hold, and the last page says so. Both databases."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from audit import Actor
from audit.events import Selection, iter_rows, read_page, read_page_newest
from identity import teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.identity.test_api_sessions import sign_in


@pytest.fixture
def client(app: Any) -> FlaskClient:
    """No cookie jar: each request sends exactly the cookie its headers name."""
    return app.test_client(use_cookies=False)


@pytest.fixture
def busy(db: Database, system: Actor, acme: NewOrg) -> list[int]:
    """Some 25 more events in acme's chain; return every seq, oldest first."""
    with db.transaction() as session:
        for n in range(12):
            teams.create_team(session, system, acme.org.id, f"Team {n}")
    with db.reading() as session:
        return [int(row.seq) for row in iter_rows(session, Selection(acme.org.id))]


@pytest.mark.parametrize("size", [1, 5, 7, 1000])
def test_pages_newest_first_are_the_chain_reversed(db: Database, acme: NewOrg, busy: list[int], size: int) -> None:
    seen: list[int] = []
    before = None
    with db.reading() as session:
        while True:
            page = read_page_newest(session, Selection(acme.org.id), size, before)
            seen += [int(row.seq) for row in page.rows]
            assert len(page.rows) <= size
            if page.ended or not page.rows:
                break
            before = page.position
    assert seen == busy[::-1]


def test_a_filter_holds_newest_first(db: Database, acme: NewOrg, busy: list[int]) -> None:
    selection = Selection(acme.org.id, actions=("team.created",))
    with db.reading() as session:
        oldest = [int(r.seq) for r in read_page(session, selection, 100).rows]
        newest = read_page_newest(session, selection, 100)
    assert [int(r.seq) for r in newest.rows] == oldest[::-1] and newest.ended
    assert {r.action for r in newest.rows} == {"team.created"} and len(oldest) >= 12


def test_the_console_pages_newest_first_and_in_chain_order(client: FlaskClient, db: Database, acme: NewOrg,
                                                           busy: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    from identity.web.console import audit as page_module

    monkeypatch.setattr(page_module, "PAGE", 10)
    owner = sign_in(db, acme.owner.id)
    first = client.get("/console/audit?since=2020-01-01T00:00", headers={"Cookie": owner.cookie})
    assert first.status_code == 200
    text = first.data.decode()
    assert '<option value="newest" selected>' in text
    assert "order=newest&amp;before=" in text
    before = text.split("before=", 1)[1].split('"', 1)[0]
    assert int(before) == busy[-10]  # the next page starts below the 10th newest
    older = client.get(f"/console/audit?since=2020-01-01T00:00&order=newest&before={before}",
                       headers={"Cookie": owner.cookie})
    assert older.status_code == 200
    chain = client.get("/console/audit?since=2020-01-01T00:00&order=oldest", headers={"Cookie": owner.cookie})
    assert '<option value="oldest" selected>' in chain.data.decode() and "order=oldest&amp;after=" in chain.data.decode()
    last = client.get(f"/console/audit?since=2020-01-01T00:00&order=newest&before={busy[9]}",
                      headers={"Cookie": owner.cookie})  # the 9 oldest events: a last page, no link on
    assert last.status_code == 200 and "before=" not in last.data.decode()
