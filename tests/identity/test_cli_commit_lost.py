"""A connection lost at COMMIT by an `identity` command (identity.db.CommitUnknown): the change may
have been made, so the command says so on one line, how to check, and exits 4 (README), never a
traceback nor "the database cannot be used", which reads as nothing done. Real PostgreSQL behind a
real TCP relay that drops the connection once the server has answered the COMMIT (tests.commit_cutter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import text

from identity import orgs
from identity.db import Database
from identity.migrate import alembic_config, downgrade
from identity.web.cli import COMMIT_UNKNOWN_EXIT, main
from tests.commit_cutter import CommitCutter, relayed_url

pytestmark = pytest.mark.postgres_only("a PostgreSQL connection through a relay that drops it")


@pytest.fixture
def relayed(db_url: str, cli_env: dict[str, str]) -> Iterator[tuple[CommitCutter, CliRunner]]:
    """A relay that cuts the COMMIT after a member's INSERT, and a runner whose DATABASE_URL goes through it."""
    with relayed_url(db_url) as (cutter, url):
        yield cutter, CliRunner(env={**cli_env, "DATABASE_URL": url})


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    return lines[0]


def test_org_create_whose_commit_is_lost_says_it_may_have_been_made(
        relayed: tuple[CommitCutter, CliRunner], db: Database) -> None:
    cutter, runner = relayed
    cutter.armed = True
    result = runner.invoke(main, ["org", "create", "Acme", "--json"])
    assert cutter.cuts == 1, result.output
    assert result.exit_code == COMMIT_UNKNOWN_EXIT == 4, result.output
    line = _one_error_line(result.stderr)
    assert "may have been made" in line, line
    with db.reading() as session:  # it was: the server committed before the relay dropped its answer
        assert orgs.get_org_by_slug(session, "acme").name == "Acme"


def test_a_connection_lost_before_commit_keeps_its_own_message(db_url: str, cli_env: dict[str, str],
                                                               db: Database) -> None:
    with relayed_url(db_url, before_commit=True) as (cutter, url):
        cutter.armed = True
        result = CliRunner(env={**cli_env, "DATABASE_URL": url}).invoke(main, ["org", "create", "Acme", "--json"])
    assert cutter.cuts == 1, result.output
    assert result.exit_code == 1, result.output
    line = _one_error_line(result.stderr)
    assert "cannot be used" in line and "may have been made" not in line, line
    with db.reading() as session:
        assert not orgs.any_org(session)


def _version(db: Database) -> str:
    with db.begin() as conn:
        return str(conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one())


def test_db_upgrade_whose_commit_is_lost_says_to_run_it_again(db_url: str, cli_env: dict[str, str],
                                                              db: Database) -> None:
    """Alembic runs the migrations in one transaction on PostgreSQL and commits it when the last one
    has set alembic_version: that COMMIT is cut here."""
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    downgrade(db_url, "0024")  # two releases back: the upgrade's one transaction runs several migrations
    with relayed_url(db_url, after=b"UPDATE alembic_version") as (cutter, url):
        cutter.armed = True
        result = CliRunner(env={**cli_env, "DATABASE_URL": url}).invoke(main, ["db", "upgrade"])
    assert cutter.cuts == 1, result.output
    assert result.exit_code == COMMIT_UNKNOWN_EXIT, result.output
    line = _one_error_line(result.stderr)
    assert "may have been made" in line and "identity db upgrade" in line, line
    assert _version(db) == head  # the server committed the migrations
    again = CliRunner(env=cli_env).invoke(main, ["db", "upgrade"])  # as the line says: it is idempotent
    assert again.exit_code == 0, again.output
    assert _version(db) == head
