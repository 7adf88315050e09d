"""Reading the log newest first (the console's default order): pages walk down the chain without a gap
or a repeat, filters hold, and the last page says so. Both databases."""

from __future__ import annotations

import html
import re
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
    before = text.split("before=", 1)[1].split('"', 1)[0].split("&", 1)[0]
    assert int(before) == busy[-10]  # the next page starts below the 10th newest
    older = client.get(f"/console/audit?since=2020-01-01T00:00&order=newest&before={before}",
                       headers={"Cookie": owner.cookie})
    assert older.status_code == 200
    chain = client.get("/console/audit?since=2020-01-01T00:00&order=oldest", headers={"Cookie": owner.cookie})
    assert '<option value="oldest" selected>' in chain.data.decode() and "order=oldest&amp;after=" in chain.data.decode()
    last = client.get(f"/console/audit?since=2020-01-01T00:00&order=newest&before={busy[9]}",
                      headers={"Cookie": owner.cookie})  # the 9 oldest events: a last page, no link on
    assert last.status_code == 200 and "before=" not in last.data.decode()


def _seqs(answer: Any) -> list[int]:
    """The events a console page shows, as it shows them."""
    return [int(seq) for seq in re.findall(r'<td data-label="#">(\d+)</td>', answer.data.decode())]


def _link(answer: Any, name: str) -> str | None:
    """The address of the page's `name` link (Next page, Previous page, Newest, Show the newest), or None."""
    found = re.search(rf'<a href="(/console/audit\?[^"]*)">{name}</a>', answer.data.decode())
    return html.unescape(found.group(1)) if found else None


def test_going_back_returns_to_the_page_one_saw(client: FlaskClient, db: Database, acme: NewOrg, busy: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The pages keep to the log as it stood when its first page was shown: back from the page below the
    newest is that newest page as seen, which offers nothing newer (not the reader's own `audit.read`
    events, recorded by the paging); the page counts them instead and links to the newest (s22)."""
    from identity.web.console import audit as page_module

    monkeypatch.setattr(page_module, "PAGE", 10)
    owner = sign_in(db, acme.owner.id)

    def get(url: str) -> Any:
        return client.get(url, headers={"Cookie": owner.cookie})

    first = get("/console/audit?since=2020-01-01T00:00")
    seen = _seqs(first)
    assert seen == busy[::-1][:10] and _link(first, "Previous page") is None
    below = get(_link(first, "Next page") or "")
    assert _seqs(below) == busy[::-1][10:20]
    back = get(_link(below, "Previous page") or "")
    assert _seqs(back) == seen
    assert _link(back, "Previous page") is None  # nothing newer in the view: the reads since are not in it
    assert "3 newer events since you opened this log" in back.data.decode()  # the three pages' audit.read
    assert _seqs(get(_link(back, "Newest") or "")) == seen  # the view's newest page is the one first seen
    newest = get(_link(back, "Show the newest") or "")
    assert _seqs(newest)[0] > seen[0] and "newer event" not in newest.data.decode()


def test_the_newer_count_stops_at_its_bound(client: FlaskClient, db: Database, acme: NewOrg, busy: list[int],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The count of newer events reads no further than NEWER_COUNTED rows and says "or more" past it,
    so a view opened long ago costs one bounded read, not a count of everything written since."""
    from identity.web.console import audit as page_module

    monkeypatch.setattr(page_module, "PAGE", 10)
    monkeypatch.setattr(page_module, "NEWER_COUNTED", 2)
    owner = sign_in(db, acme.owner.id)
    first = client.get("/console/audit?since=2020-01-01T00:00", headers={"Cookie": owner.cookie})
    below = client.get(_link(first, "Next page") or "", headers={"Cookie": owner.cookie})
    back = client.get(_link(below, "Previous page") or "", headers={"Cookie": owner.cookie})
    assert "2 or more newer events since you opened this log" in back.data.decode()  # three were recorded


def test_no_previous_page_when_exactly_one_page_is_newer(client: FlaskClient, db: Database, acme: NewOrg,
                                                          busy: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Back to the newest page of a selection with exactly one page above the one come from: no "Previous
    page" leading to an empty one (nor, in chain order, a "Next page" after the last full page) (s22)."""
    from identity.web.console import audit as page_module

    owner = sign_in(db, acme.owner.id)
    with db.reading() as session:
        created = [int(row.seq) for row in iter_rows(session, Selection(acme.org.id, actions=("team.created",)))]
    monkeypatch.setattr(page_module, "PAGE", len(created) // 2)
    size = len(created) // 2
    query = "/console/audit?since=2020-01-01T00:00&action=team.created"

    def get(url: str) -> Any:
        return client.get(url, headers={"Cookie": owner.cookie})

    first = get(query)
    below = get(_link(first, "Next page") or "")
    back = get(_link(below, "Previous page") or "")
    assert _seqs(back) == _seqs(first) == created[::-1][:size]
    assert _link(back, "Previous page") is None
    chain = get(f"{query}&order=oldest&after={created[-size - 1]}")  # the last page of the chain order, full
    assert _seqs(chain) == created[-size:] and _link(chain, "Next page") is None
