"""Fixtures: every test that takes `db` runs on SQLite and on a real PostgreSQL.

Each test gets a database of its own, copied from one migrated at the start of the session
(a file copy on SQLite, CREATE DATABASE ... TEMPLATE on PostgreSQL), so that tests commit for
real, run in parallel threads for real, and still start clean.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from werkzeug.routing import Rule

from audit import Actor
from audit.actor import system_actor
from identity import orgs
from identity.db import Database
from identity.migrate import upgrade
from identity.orgs import NewOrg
from identity.web.app import create_app
from tests.pgcluster import PostgresCluster

BACKENDS = ("sqlite", "postgresql")

def _builders_compiled_once() -> None:
    """Most tests build an app of their own (`app` below: 4,000 apps a run), and 90% of create_app's
    95 ms is werkzeug compiling two URL-builder functions per rule (some 150 rules) from a generated
    AST. The code it generates depends only on the rule and its map's settings, never on the app, so
    each is compiled once per test process here and bound to each new rule as werkzeug binds it.
    Served apps (gunicorn in subprocesses) compile their own, as in production."""
    compile_builder = Rule._compile_builder
    compiled: dict[tuple[Any, ...], Any] = {}

    def once(rule: Rule, append_unknown: bool = True) -> Any:
        routing = rule.map
        key = (rule.rule, rule.subdomain, rule.host, routing.host_matching, rule.merge_slashes, append_unknown,
               repr(sorted((rule.defaults or {}).items())), tuple(sorted(routing.converters.items())))
        if key not in compiled:
            compiled[key] = compile_builder(rule, append_unknown)
        return compiled[key]

    Rule._compile_builder = once  # type: ignore[method-assign]


_builders_compiled_once()

# No per-example deadline: what these tests prove is the answer, not its speed (benchmarks/ measures
# that), and on 2 shared cores one example took 348 ms against the default's 200 ms, then 16 ms.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")

_counter = itertools.count()


@pytest.fixture(scope="session")
def sqlite_template() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="identity-sqlite-"))
    path = folder / "template.db"
    upgrade(f"sqlite:///{path}")
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(in_memory=True)
    cluster.start()
    url = cluster.create_database("template_identity")
    upgrade(url)
    Database(url).dispose()
    yield cluster
    cluster.stop()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database of each backend; on PostgreSQL, dropped after the test
    (a run makes some 2,000: kept, they would fill the cluster's directory with gigabytes)."""
    for marker, backend in (("postgres_only", "postgresql"), ("sqlite_only", "sqlite")):
        only = request.node.get_closest_marker(marker)
        if only is not None and request.param != backend:
            pytest.skip(f"runs against {backend} only: {only.args[0]}")  # the marker must say why
    if request.param == "sqlite":
        path = tmp_path / "identity.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = f"test_{next(_counter)}"
    yield cluster.create_database(name, template="template_identity")
    cluster.drop_database(name)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def system() -> Actor:
    return system_actor("tests")


@pytest.fixture
def acme(db: Database, system: Actor) -> NewOrg:
    """An org `acme` with its owner, committed."""
    with db.transaction() as session:
        return orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")


class ReadingClient(FlaskClient):
    """A test client that reads each answer whole and closes it, as an HTTP client does.

    Werkzeug's client leaves an answer open until it is garbage-collected; a streamed answer
    (a SCIM group's members) holds its read transaction until it is closed. `buffered=False`
    still gives the open answer, to read it piece by piece.
    """

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> Any:
        return super().open(*args, buffered=buffered, **kwargs)


@pytest.fixture
def app(db: Database, tmp_path: Path) -> Flask:
    app = create_app({"DATABASE": db, "DATABASE_URL": db.url, "SECRET_KEY": "test-secret-key-32-characters-min",
                      "BASE_URL": "http://localhost", "TESTING": True})
    app.test_client_class = ReadingClient
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def cli_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment for running the `identity` command against the test database."""
    return {"DATABASE_URL": db_url, "IDENTITY_DATA_DIR": str(tmp_path / "var"),
            "SECRET_KEY": "test-secret-key-32-characters-min"}  # the `app` fixture's: the CLI and the service share SECRET_KEY


@pytest.fixture
def runner(cli_env: dict[str, str]) -> CliRunner:
    return CliRunner(env=cli_env)


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog, also given the service's own log (the `identity` logger does not propagate to caplog's)."""
    logger = logging.getLogger("identity")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
