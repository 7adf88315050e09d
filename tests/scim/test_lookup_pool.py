"""The IdPs' user lookups read on the pool whose plans PostgreSQL may reuse (Database.looking_up), and
nothing else does: every text that routes a read there is a lookup by the filter grammar's own test
(scim.filter.bounded), and the answers are the same on both databases."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import assume, given
from hypothesis import strategies as st
from sqlalchemy import event

from audit import Actor
from identity.db import Database
from identity.web.context import EXTENSION
from scim import idp_lookups
from scim.errors import InvalidFilter
from scim.filter import USERS, bounded, parse_filter
from tests.scim.client import Scim, scim_for


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(word, upper, strict=True)))


_ATTRIBUTE = st.one_of(*(_cased(a) for a in ("userName", "externalId", "id", "emails", "emails.value")),
                       st.builds(lambda e, t, v: f'{e}[type eq "{t}"]{v}', _cased("emails"),
                                 st.text(st.characters(blacklist_characters='"\\'), max_size=8),
                                 st.sampled_from(["", ".value"])))
_VALUE = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(
    lambda v: v.replace("\\", "\\\\").replace('"', '\\"'))
_SPACE = st.sampled_from(["", " ", "  ", "\t"])


@given(text=st.builds(lambda s1, a, s2, op, s3, v, s4: f'{s1}{a}{s2 or " "}{op}{s3 or " "}"{v}"{s4}',
                      _SPACE, _ATTRIBUTE, _SPACE, _cased("eq"), _SPACE, _VALUE, _SPACE))
def test_every_text_the_lookup_pool_takes_is_a_lookup(text: str) -> None:
    if not idp_lookups.is_lookup(idp_lookups.USERS, text):
        return  # e.g. a tab where the pattern wants a space: read on the usual pool, which is always right
    try:
        node = parse_filter(text)
    except InvalidFilter:
        assume(False)  # refused as a 400 wherever it is read
    assert bounded(node, USERS), text


@pytest.mark.parametrize("text", ['userName eq "a@b.test"', 'externalId eq "00u1"', 'USERNAME EQ "x"',
                                  'emails[type eq "work"].value eq "a@b.test"', 'emails.value eq "a"',
                                  'emails eq "a"', 'id eq "5f3c"'])
def test_the_idps_lookups_take_the_lookup_pool(text: str) -> None:
    assert idp_lookups.is_lookup(idp_lookups.USERS, text)


@pytest.mark.parametrize("text", [None, "", 'active eq true', 'userName sw "a"', 'userName eq "a" or active eq true',
                                  'displayName eq "A"', 'userName eq "a" and active eq true', 'userName pr'])
def test_other_filters_do_not(text: str | None) -> None:
    assert not idp_lookups.is_lookup(idp_lookups.USERS, text)


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def test_lookups_read_on_the_lookup_pool_and_pages_do_not(scim: Scim, client: FlaskClient) -> None:
    database: Database = client.application.extensions[EXTENSION]
    made = scim.create_user("ada@acme.test").get("id")
    on_lookup_pool: list[str] = []

    def seen(*args: object) -> None:
        on_lookup_pool.append(str(args[2]))

    # The pools whose plans PostgreSQL may reuse: the lookup pool (GET /Users/<id>) and the point
    # pool (the filter lookup, answered by scim.lookup_front in two statements and no transaction).
    pools = {database.lookup_engine, database.point_engine}
    for engine in pools:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        scim.get("/Users")  # the token's last-used time saved: the lookup below has nothing to write
        on_lookup_pool.clear()
        found = scim.get("/Users?filter=" + quote('userName eq "ADA@acme.test"'))
        assert found.status_code == 200 and [r["id"] for r in found.json["Resources"]] == [made]
        filtered = len(on_lookup_pool)
        assert scim.get(f"/Users/{made}").json["userName"] == "ada@acme.test"
        lookups = len(on_lookup_pool)
        page = scim.get("/Users?startIndex=1&count=10")
        assert page.status_code == 200 and page.json["totalResults"] == 2  # with the org's owner
    finally:
        for engine in pools:
            event.remove(engine, "before_cursor_execute", seen)
    if database.dialect == "postgresql":  # on SQLite the lookup pool is the database's one pool
        assert filtered == 2 and not any(s.startswith(("BEGIN", "COMMIT")) for s in on_lookup_pool[:2])
        assert lookups >= 4 and all("users" in s or "scim_tokens" in s or "idp_group" in s or "user_emails" in s
                                    for s in on_lookup_pool), on_lookup_pool
        assert len(on_lookup_pool) == lookups  # the page read on the pool that plans for each value


def test_a_write_checks_its_credential_outside_a_transaction(scim: Scim, client: FlaskClient) -> None:
    database: Database = client.application.extensions[EXTENSION]
    seen: list[tuple[str, str]] = []

    def on(pool: str) -> Any:
        def listener(*args: Any) -> None:
            statement = str(args[2])
            seen.append((pool, statement.split()[0] + (" scim_tokens" if "scim_tokens" in statement else "")))
        return listener

    listeners = [(engine, on(name)) for engine, name in ((database.engine, "main"), (database.point_engine, "point"))
                 if name == "main" or engine is not database.engine]
    for engine, listener in listeners:
        event.listen(engine, "before_cursor_execute", listener)
    try:
        made = scim.create_user("grace@acme.test")
    finally:
        for engine, listener in listeners:
            event.remove(engine, "before_cursor_execute", listener)
    assert made["userName"] == "grace@acme.test"
    token_read = seen.index(next(s for s in seen if s[1] == "SELECT scim_tokens"))
    if database.dialect == "postgresql":  # read on the autocommit pool: no BEGIN, no COMMIT around it
        assert seen[token_read][0] == "point" and all(pool == "main" for pool, _ in seen[token_read + 1:])
    else:  # SQLite: no BEGIN before it; the write's own BEGIN IMMEDIATE after it
        assert all(not statement.startswith("BEGIN") for _, statement in seen[:token_read]), seen
        assert any(statement.startswith("BEGIN") for _, statement in seen[token_read + 1:]), seen
