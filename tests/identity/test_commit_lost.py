"""A connection lost by a write's COMMIT (identity.db.CommitUnknown) is answered at each door as a 500
that says the change may have been made, naming the request id, never the 503 "changed nothing" of a
connection lost before COMMIT, which stays one. Real PostgreSQL behind a real TCP relay that drops the
connection (tests.commit_cutter)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from audit import Actor
from identity import keys, scim_credentials
from identity.db import CommitUnknown, Database
from identity.orgs import NewOrg
from identity.wallet_models import WalletEntry
from identity.web.app import create_app
from saml import links
from tests.commit_cutter import CommitCutter, relayed_url
from tests.identity.test_wallet_usage import World, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.saml.conftest import link_form

pytestmark = pytest.mark.postgres_only("a PostgreSQL connection through a relay that drops it")
SCIM_USER = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "newhire@acme.test",
             "active": True}


@contextmanager
def _served_through(db_url: str, after: bytes = b"INSERT INTO users",
                    before_commit: bool = False) -> Iterator[tuple[CommitCutter, FlaskClient]]:
    """The app on a Database reached through a relay that cuts as told, and its test client."""
    with relayed_url(db_url, after, before_commit) as (cutter, url):
        through = Database(url)
        try:
            app = create_app({"DATABASE": through, "DATABASE_URL": url, "BASE_URL": "http://localhost",
                              "SECRET_KEY": "test-secret-key-32-characters-min", "TESTING": True})
            yield cutter, app.test_client()
        finally:
            through.dispose()


def _admin_key(db: Database, system: Actor, acme: NewOrg) -> dict[str, str]:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="owner", scopes=["admin"]).secret
    return {"Authorization": f"Bearer {key}"}


def _members(db: Database, org_id: str, name: str) -> int:
    """The org's members named `name` (their userName, or their email as the admin API adds them)."""
    with db.reading() as session:
        return session.execute(text("SELECT count(*) FROM users WHERE org_id = :org AND (email = :name "
                                    "OR user_name = :name)"), {"org": org_id, "name": name}).scalar_one()


def test_a_transaction_whose_commit_loses_the_connection_raises_commit_unknown_and_was_committed(
        db: Database, db_url: str) -> None:
    with relayed_url(db_url, after=b"INSERT INTO commit_lost") as (cutter, url):
        through = Database(url)
        try:
            with db.begin() as conn:
                conn.execute(text("CREATE TABLE commit_lost (n integer)"))
            cutter.armed = True
            with pytest.raises(CommitUnknown), through.transaction() as session:
                session.execute(text("INSERT INTO commit_lost VALUES (1)"))
            assert cutter.cuts == 1
            with db.reading() as session:
                assert session.execute(text("SELECT count(*) FROM commit_lost")).scalar_one() == 1
        finally:
            through.dispose()


def test_the_admin_api_answers_a_commit_lost_as_a_500_problem_saying_it_may_have_been_made(
        db: Database, db_url: str, system: Actor, acme: NewOrg) -> None:
    headers = _admin_key(db, system, acme)
    with _served_through(db_url) as (cutter, client):
        cutter.armed = True
        answer = client.post("/api/v1/orgs/acme/members", headers=headers,
                             json={"email": "newhire@acme.test", "role": "member"})
    assert cutter.cuts == 1
    assert answer.status_code == 500 and answer.content_type == "application/problem+json", answer.data
    body = answer.get_json()
    assert body["code"] == "outcome_unknown" and "may have been made" in body["detail"], body
    assert body["request_id"] == answer.headers["X-Request-Id"] and "Retry-After" not in answer.headers
    assert _members(db, acme.org.id, "newhire@acme.test") == 1  # it was: "read it back" finds it


def test_a_connection_lost_before_commit_is_still_the_503_that_changed_nothing(
        db: Database, db_url: str, system: Actor, acme: NewOrg) -> None:
    headers = _admin_key(db, system, acme)
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    scim = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    with _served_through(db_url, before_commit=True) as (cutter, client):
        cutter.armed = True
        api = client.post("/api/v1/orgs/acme/members", headers=headers,
                          json={"email": "newhire@acme.test", "role": "member"})
        assert cutter.cuts == 1 and api.status_code == 503, api.data
        assert api.get_json()["code"] == "conflict_retry" and api.headers["Retry-After"] == "1"
        cutter.armed = True
        first = client.post("/scim/v2/Users", json=SCIM_USER, headers=scim)
        assert cutter.cuts == 2 and first.status_code == 503, first.data
        assert _members(db, acme.org.id, "newhire@acme.test") == 0
        again = client.post("/scim/v2/Users", json=SCIM_USER, headers=scim)
        assert again.status_code == 201, again.data  # as the 503 promised


def test_a_scim_bulk_operation_whose_commit_is_lost_is_its_500_saying_so(
        db: Database, db_url: str, system: Actor, acme: NewOrg) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    scim = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    bulk = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": [{"method": "POST", "path": "/Users", "bulkId": "one", "data": SCIM_USER}]}
    with _served_through(db_url) as (cutter, client):
        cutter.armed = True
        answer = client.post("/scim/v2/Bulk", json=bulk, headers=scim)
    assert cutter.cuts == 1 and answer.status_code == 200, answer.data
    [outcome] = answer.get_json()["Operations"]
    assert outcome["status"] == "500" and "may have been made" in outcome["response"]["detail"], outcome
    assert _members(db, acme.org.id, "newhire@acme.test") == 1


def test_a_quick_debit_whose_commit_is_lost_says_so_and_its_retry_with_the_request_id_books_it_once(
        db: Database, db_url: str, client: FlaskClient, world: World) -> None:  # noqa: F811
    top_up(client, world, 10_000)
    with _served_through(db_url, after=b"audit_events") as (cutter, through):
        assert use(through, world, 10, "warm").get_json()["status"] == "debited"
        cutter.armed = True
        answer = use(through, world, 300, "cut")
        assert cutter.cuts == 1
        assert answer.status_code == 500 and answer.get_json()["code"] == "outcome_unknown", answer.data
        assert "same request_id is booked once" in answer.get_json()["detail"]
        again: Any = use(through, world, 300, "cut")
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate", again.data
    with db.reading() as session:
        assert session.scalars(select(WalletEntry.amount_micros).where(WalletEntry.request_id == "cut")).all() == [-300]


def test_a_sign_in_whose_commit_is_lost_is_a_500_page_saying_to_check(db: Database, db_url: str, system: Actor,
                                                                      acme: NewOrg) -> None:
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    with _served_through(db_url, after=b"INSERT INTO sso_sessions") as (cutter, client):
        form = link_form(client, token)
        cutter.armed = True
        answer = client.post(f"/login/link/{token}", data=form)
    assert cutter.cuts == 1
    assert answer.status_code == 500 and answer.content_type.startswith("text/html"), answer.data
    assert b"may have been saved" in answer.data and b"check before trying again" in answer.data
