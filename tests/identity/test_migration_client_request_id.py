"""Migration 0013d: audit events gain a nullable `client_request_id`; going back keeps the table's triggers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from identity.migrate import downgrade, upgrade


def _columns_and_triggers(path: Path) -> tuple[list[str], set[str]]:
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(audit_events)")]
        triggers = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                                   "AND tbl_name = 'audit_events'")}
    return columns, triggers


def test_the_column_comes_and_goes_and_the_append_only_triggers_stay(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    upgrade(f"sqlite:///{path}", "0013d")
    columns, triggers = _columns_and_triggers(path)
    assert "client_request_id" in columns and triggers
    downgrade(f"sqlite:///{path}", "0012")
    after, kept = _columns_and_triggers(path)
    assert "client_request_id" not in after and kept == triggers
