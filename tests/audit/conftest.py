"""Fixtures for the audit log's tests: the signing key's folder, the CLI, tampering as an attacker."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Executable, text

from audit import signing
from audit.actor import Actor
from identity import keys, teams
from identity.db import Database
from identity.orgs import NewOrg
from identity.web.audit_cli import audit


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data folder (where the signing key is made), the same one `cli_env` names."""
    folder = tmp_path / "var"
    monkeypatch.setenv("IDENTITY_DATA_DIR", str(folder))
    monkeypatch.delenv("AUDIT_SIGNING_KEY", raising=False)
    return folder


@pytest.fixture
def key(data_dir: Path) -> Ed25519PrivateKey:
    return signing.load_signing_key(data_dir)


@pytest.fixture
def cli(cli_env: dict[str, str]) -> Callable[..., Result]:
    """Run `identity audit ...` (the `audit` click group) against the test database."""
    runner = CliRunner(env=cli_env)

    def invoke(*args: str) -> Result:
        return runner.invoke(audit, list(args), catch_exceptions=False)
    return invoke


@pytest.fixture
def busy(db: Database, acme: NewOrg, system: Actor) -> NewOrg:
    """Acme with a dozen more events: teams created and renamed."""
    for number in range(6):
        with db.transaction() as session:
            team = teams.create_team(session, system, acme.org.id, f"Team {number}")
            teams.rename_team(session, system, acme.org.id, team.id, f"Squad {number}")
    return acme


@pytest.fixture
def admin_key(db: Database, acme: NewOrg, system: Actor) -> str:
    """The acme owner's admin API key."""
    with db.transaction() as session:
        issued = keys.create_api_key(session, system, acme.org.id, user_id=acme.owner.id,
                                     team_id=acme.default_team_id, name="admin", scopes=["admin"])
    return issued.secret


def as_attacker(db: Database, *statements: tuple[str | Executable, Any]) -> None:
    """Run SQL the way someone with direct database access would: around the append-only triggers."""
    with db.begin() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
        for statement, params in statements:
            conn.execute(text(statement) if isinstance(statement, str) else statement, params)
        if db.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, docs: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(doc) + "\n" for doc in docs))


@pytest.fixture
def exported(cli: Callable[..., Result], busy: NewOrg, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "export.jsonl"
    result = cli("export", "--org", busy.org.slug, "-o", str(path))
    assert result.exit_code == 0, result.output
    yield path
