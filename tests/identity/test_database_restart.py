"""A PostgreSQL server that ended the service's connections (a restart, a failover): each door's
first request on a dead pooled connection is a 503 with Retry-After in its own format, as a
transient conflict is (identity.db.transient_kind), never a 500; the pool is renewed, so the
requests that follow are answered.

From a hostile operator's review: the first request on each pooled connection after
`pg_ctl restart` was a 500 with a traceback."""

from __future__ import annotations

import itertools
from contextlib import ExitStack
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from audit import Actor
from identity import keys, scim_credentials
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.app import create_app
from identity.web.context import EXTENSION
from saml import links
from tests.conftest import ReadingClient
from tests.identity.test_wallet_usage import World, bearer, top_up, use, world  # noqa: F401  (world: the fixture)
from tests.saml.conftest import link_form

pytestmark = pytest.mark.postgres_only("PostgreSQL's server ends the connections (a restart, a failover)")
HELD = 3  # connections each pool keeps, as a worker serving requests at once does


def _end_every_connection(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()"))


def _fill_pools(database: Database) -> None:
    for engine in {database.engine, database.point_engine, database.lookup_engine}:
        with ExitStack() as stack:
            for _ in range(HELD):
                stack.enter_context(engine.connect()).execute(text("SELECT 1"))


def _answered_after_the_restart(db: Database, client: FlaskClient, path: str, **kwargs: Any) -> list[Any]:
    """The answers to `path` after every connection ended: a 503, then 200 (or 200 at once)."""
    assert client.get(path, **kwargs).status_code == 200
    _fill_pools(client.application.extensions[EXTENSION])  # the pools hold live connections, several each
    _end_every_connection(db)
    answers = [client.get(path, **kwargs)]
    if answers[0].status_code == 503:
        assert answers[0].headers.get("Retry-After") == "1", answers[0].headers
        answers.append(client.get(path, **kwargs))
    # One 503, not one per pooled connection: the pool it met was renewed whole.
    assert answers[-1].status_code == 200, [answer.status_code for answer in answers]
    return answers


@pytest.fixture
def app(db: Database, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in {"DATABASE_URL": db.url, "SECRET_KEY": "s" * 32, "IDENTITY_DATA_DIR": str(tmp_path),
                        "BASE_URL": "http://localhost"}.items():
        monkeypatch.setenv(name, value)
    made = create_app()
    made.test_client_class = ReadingClient
    return made


def test_scim_answers_503_in_its_error_format_then_200(db: Database, system: Actor, acme: NewOrg, app: Any) -> None:
    with db.transaction() as session:
        token = scim_credentials.create_scim_token(session, system, acme.org.id).secret
    answers = _answered_after_the_restart(db, app.test_client(), "/scim/v2/Users",
                                          headers={"Authorization": f"Bearer {token}"})
    for answer in answers[:-1]:
        assert answer.json["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"], answer.json


def test_the_admin_api_answers_503_as_problem_json_then_200(db: Database, system: Actor, acme: NewOrg,
                                                            app: Any) -> None:
    with db.transaction() as session:
        key = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id, team_id=acme.default_team_id,
                                  name="owner", scopes=["admin"]).secret
    answers = _answered_after_the_restart(db, app.test_client(), "/api/v1/orgs/acme/seats",
                                          headers={"Authorization": f"Bearer {key}"})
    for answer in answers[:-1]:
        assert answer.json["code"] == "conflict_retry", answer.json


def test_the_console_answers_503_as_a_page_then_200(db: Database, system: Actor, acme: NewOrg, app: Any) -> None:
    client = app.test_client()
    with db.transaction() as session:
        token = links.issue_sign_in_link(session, system, acme.org.id, "owner@acme.test")
    assert client.post(f"/login/link/{token}", data=link_form(client, token)).status_code == 303
    _answered_after_the_restart(db, client, "/me")


DOORS = ("admin API", "SCIM lookup", "key check", "usage")


@pytest.mark.parametrize("first", DOORS)
def test_after_a_restart_the_doors_answer_one_503_in_all_whichever_comes_first(
        db: Database, system: Actor, acme: NewOrg, app: Any, world: World, first: str) -> None:  # noqa: F811
    """A process has several pools (the main one, the lookups', the key check's autocommit one): a
    disconnect seen by any of them renews them all, so the first request of each door after the
    restart does not meet a dead connection of its own pool (one 503 per pool, before)."""
    client = app.test_client()
    with db.transaction() as session:
        scim = bearer(scim_credentials.create_scim_token(session, system, acme.org.id).secret)
    top_up(client, world, 1_000)
    used = itertools.count()
    doors = {
        "admin API": lambda: client.get(world.wallet, headers=world.owner),
        "SCIM lookup": lambda: client.get('/scim/v2/Users?filter=userName eq "bob@acme.test"', headers=scim),
        "key check": lambda: client.post("/api/v1/keys/verify", json={"key": world.member_key}, headers=world.gateway),
        "usage": lambda: use(client, world, 1, f"r{next(used)}"),
    }
    assert {name: door().status_code for name, door in doors.items()} == dict.fromkeys(DOORS, 200)
    _fill_pools(app.extensions[EXTENSION])
    _end_every_connection(db)
    order = [first, *(name for name in DOORS if name != first)]
    after = {name: doors[name]().status_code for name in order}
    assert list(after.values()).count(503) <= 1 and set(after.values()) <= {200, 503}, after
    assert {name: door().status_code for name, door in doors.items()} == dict.fromkeys(DOORS, 200)
