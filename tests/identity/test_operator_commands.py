"""What an operator runs in production: the `identity` command, its cron jobs, the settings read at start.

From a hostile operator's review: each test's docstring says what the code did wrong before it passed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from audit import Actor, clock
from audit.models import AuditCheckpoint, AuditEvent
from identity import keys, orgs, wallet_controls
from identity.db import Database
from identity.models import Invitation
from identity.orgs import NewOrg
from identity.usage import UsageRecord
from identity.wallet_models import TopUpRequest, WalletEntry
from identity.web import cli as cli_module
from identity.web.app import create_app
from identity.web.cli import main
from tests.conftest import ReadingClient
from tests.factories import provision
from tests.identity.test_wallets import key_of, owner, post, top_up


def _no_traceback(result: Result) -> None:
    """A command that fails says why and exits; a Python exception escaping it is a traceback on cron's mail."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"traceback: {type(result.exception).__name__}: {result.exception}")


def _count(db: Database, model: Any, *where: Any) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


# 1. `identity audit export -o FILE` that cannot be written -------------------------------------------------

def test_audit_export_to_an_unwritable_file_records_no_export_and_no_traceback(
        runner: CliRunner, db: Database, acme: NewOrg, tmp_path: Path) -> None:
    """The export is audited (`audit.exported`) and a checkpoint signed BEFORE the output file is opened:
    a typo in -o leaves the log saying the org's events were exported when nothing was, and the
    operator gets a FileNotFoundError traceback."""
    exported = (AuditEvent.org_id == acme.org.id, AuditEvent.action == "audit.exported")
    before_events, before_checkpoints = _count(db, AuditEvent, *exported), _count(db, AuditCheckpoint)
    result = runner.invoke(main, ["audit", "export", "--org", "acme", "-o", str(tmp_path / "missing" / "x.jsonl")])
    assert result.exit_code != 0
    assert _count(db, AuditEvent, *exported) == before_events, "an export that wrote nothing is in the audit log"
    assert _count(db, AuditCheckpoint) == before_checkpoints
    _no_traceback(result)


# 2. `identity audit verify`: a usage error must not read as a broken chain ---------------------------------

@pytest.mark.parametrize("case", ["unknown org", "unreadable public key", "malformed checkpoint file"])
def test_audit_verify_usage_errors_are_exit_2_not_the_broken_chain_status(
        runner: CliRunner, acme: NewOrg, tmp_path: Path, case: str) -> None:
    """identity/web/audit_cli.py documents: 1 = the chain is broken, 2 = bad usage. An unknown org
    exits 1 (ClickException), and a bad --public-key or --checkpoint file exits 1 with a traceback:
    a compliance job alarms "tampered" for a typo, and cannot tell the two apart."""
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a key, not json\n")
    args = {"unknown org": ["audit", "verify", "--org", "no-such-org"],
            "unreadable public key": ["audit", "verify", "--org", "acme", "--public-key", str(garbage)],
            "malformed checkpoint file": ["audit", "verify", "--org", "acme", "--checkpoint", str(garbage)]}[case]
    result = runner.invoke(main, args)
    _no_traceback(result)
    assert result.exit_code == 2, f"exit {result.exit_code} (1 means BROKEN): {result.output}"
