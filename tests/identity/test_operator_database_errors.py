"""The `identity` commands when the database cannot be reached or DATABASE_URL is not a URL.

README ("Running in production"): every `identity` command answers a bad setting or a refusal with
one `error: ...` line naming it on stderr and exit 1, never a traceback, so that a cron job's mail
says what is wrong. A database that is down, or a DATABASE_URL with a typo, is the first thing a
cron job's mail has to say.

From a hostile operator's review: the docstring says what the commands did.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from identity.db import Database
from identity.web.cli import main
from tests.smtp import free_port

COMMANDS = [["billing", "renew"], ["invitations", "expire"], ["billing", "check", "--org", "acme"],
            ["db", "upgrade"], ["org", "create", "Acme", "--json"]]


def _urls() -> dict[str, str]:
    return {"postgres-down": f"postgresql://identity:hunter2@127.0.0.1:{free_port()}/identity",
            "not-a-url": "postgresql//identity@db.internal/identity",
            "bad-port": "postgresql://identity:hunter2@db.internal:54x2/identity"}


@pytest.mark.parametrize("url", ["postgres-down", "not-a-url", "bad-port"])
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_a_database_that_cannot_be_reached_is_one_error_line_naming_it(
        tmp_path: Path, url: str, args: list[str]) -> None:
    """With PostgreSQL down, each of these printed a psycopg OperationalError traceback; with a
    DATABASE_URL that SQLAlchemy cannot parse, an ArgumentError traceback; with a port that is not
    a number, `error: invalid literal for int() with base 10: '54x2'`, which does not say which
    setting is wrong. None of them may print the URL's password either."""
    env = {"DATABASE_URL": _urls()[url], "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s" * 32}
    result = CliRunner(env=env).invoke(main, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {type(result.exception).__name__}: {result.exception}")
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "DATABASE_URL" in lines[0], result.output
    assert "hunter2" not in result.output


def test_a_database_a_newer_release_migrated_is_one_error_line(db_url: str, tmp_path: Path) -> None:
    """Rolling a release back (the database already migrated by the next one): `identity db upgrade`
    (and `identity serve`, which migrates the same way first) died with alembic's `CommandError:
    Can't locate revision identified by '...'` traceback. One line should say that the database is
    newer than this release."""
    database = Database(db_url)
    try:
        with database.transaction() as session:
            session.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    finally:
        database.dispose()
    env = {"DATABASE_URL": db_url, "IDENTITY_DATA_DIR": str(tmp_path / "var"), "SECRET_KEY": "s" * 32}
    result = CliRunner(env=env).invoke(main, ["db", "upgrade"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {type(result.exception).__name__}: {result.exception}")
    assert result.output.startswith("error: ") and "9999" in result.output, result.output
