"""Every kind of tampering is found, in the database and in an exported file, and the first broken
event is named. The attacker here has direct database access: it goes around the append-only
triggers on purpose (tests/audit/conftest.py `as_attacker`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, text

from audit.events import Selection, hashed_fields, iter_rows, row_fields
from audit.log import event_hash
from audit.models import AuditCheckpoint, AuditEvent
from identity.db import Database
from identity.orgs import NewOrg
from tests.audit.conftest import as_attacker, read_lines, write_lines

K = 6  # the event the attacker goes after


def stored(db: Database, org_id: str) -> list[dict[str, Any]]:
    with db.reading() as session:
        return [row_fields(row) for row in iter_rows(session, Selection(org_id))]


def where(org_id: str, seq: int) -> dict[str, Any]:
    return {"o": org_id, "s": seq}


def rehash_from(events: list[dict[str, Any]], start: int) -> list[tuple[str, dict[str, Any]]]:
    """Statements that recompute every hash from seq `start` on, as a thorough attacker would."""
    statements = []
    prev = events[start - 2]["hash"]
    for event in events[start - 1:]:
        event = {**event, "prev_hash": prev}
        event["hash"] = prev = event_hash(event)
        statements.append(("UPDATE audit_events SET prev_hash = :p, hash = :h, actor_display = :d "
                           "WHERE org_id = :o AND seq = :s",
                           {"p": event["prev_hash"], "h": event["hash"], "d": event["actor_display"],
                            "o": event["org_id"], "s": event["seq"]}))
    return statements


def tamper_database(kind: str, db: Database, org_id: str) -> None:
    events = stored(db, org_id)
    target = events[K - 1]
    if kind == "edited":
        as_attacker(db, ("UPDATE audit_events SET actor_display = 'mallory' WHERE org_id = :o AND seq = :s",
                         where(org_id, K)))
    elif kind == "edited and re-hashed":
        forged = {**target, "actor_display": "mallory"}
        as_attacker(db, ("UPDATE audit_events SET actor_display = 'mallory', hash = :h WHERE org_id = :o AND seq = :s",
                         {"h": event_hash(forged), **where(org_id, K)}))
    elif kind == "deleted":
        as_attacker(db, ("DELETE FROM audit_events WHERE org_id = :o AND seq = :s", where(org_id, K)))
    elif kind == "inserted":
        forged = {**target, "id": "f0f0f0f0-0000-4000-8000-000000000000", "action": "user.created",
                  "target_display": "ghost@acme.test", "prev_hash": events[K - 2]["hash"]}
        forged["hash"] = event_hash(forged)
        as_attacker(db,
                    ("UPDATE audit_events SET seq = -(seq + 1) WHERE org_id = :o AND seq >= :s", where(org_id, K)),
                    ("UPDATE audit_events SET seq = -seq WHERE org_id = :o AND seq < 0", where(org_id, K)),
                    (insert(AuditEvent), forged),
                    ("UPDATE audit_heads SET seq = seq + 1 WHERE org_id = :o", {"o": org_id}))
    elif kind == "reordered":
        as_attacker(db,
                    ("UPDATE audit_events SET seq = -1 WHERE org_id = :o AND seq = :s", where(org_id, K)),
                    ("UPDATE audit_events SET seq = :s WHERE org_id = :o AND seq = :n", {"n": K + 1, **where(org_id, K)}),
                    ("UPDATE audit_events SET seq = :n WHERE org_id = :o AND seq = -1", {"n": K + 1, "o": org_id}))
    else:
        raise AssertionError(kind)


KINDS = {  # kind -> (seq named first, word in the report)
    "edited": (K, "edited"),
    "edited and re-hashed": (K, "edited"),
    "deleted": (K, "deleted"),
    "inserted": (K, "inserted"),
    "reordered": (K, "reordered"),
}


def test_untouched_database_and_export_verify(cli: Callable[..., Result], busy: NewOrg, exported: Path) -> None:
    database = cli("verify", "--org", busy.org.slug)
    assert database.exit_code == 0 and "intact" in database.output, database.output
    exported_file = cli("verify", "--org", busy.org.slug, str(exported))
    assert exported_file.exit_code == 0 and "intact: 17 events #1..#17" in exported_file.output, exported_file.output


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_database_is_found_and_first_broken_event_named(
        kind: str, cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    tamper_database(kind, db, busy.org.id)
    result = cli("verify", "--org", busy.org.slug)
    seq, word = KINDS[kind]
    assert result.exit_code == 1, result.output
    assert f"BROKEN at event #{seq}" in result.output and word in result.output, result.output


def test_history_rewritten_with_fresh_hashes_is_caught_by_a_signed_checkpoint(
        cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    made = cli("checkpoint", "--org", busy.org.slug)
    covered = json.loads(made.output)["seq"]
    events = stored(db, busy.org.id)
    events[K - 1]["actor_display"] = "mallory"
    statements = rehash_from(events, K)
    head = statements[-1][1]
    as_attacker(db, *statements, ("UPDATE audit_heads SET hash = :h WHERE org_id = :o",
                                  {"h": head["h"], "o": busy.org.id}))
    result = cli("verify", "--org", busy.org.slug)
    assert result.exit_code == 1
    assert f"BROKEN at event #{covered}" in result.output and "rewritten" in result.output, result.output


def test_events_cut_off_the_end_are_found(cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    cli("checkpoint", "--org", busy.org.slug)
    events = stored(db, busy.org.id)
    last = events[-1]["seq"]
    as_attacker(db, ("DELETE FROM audit_events WHERE org_id = :o AND seq > :s", where(busy.org.id, last - 2)),
                ("UPDATE audit_heads SET seq = :s, hash = :h WHERE org_id = :o",
                 {"h": events[-3]["hash"], **where(busy.org.id, last - 2)}))
    result = cli("verify", "--org", busy.org.slug)
    assert result.exit_code == 1 and f"BROKEN at event #{last - 1}" in result.output, result.output
    assert "truncated" in result.output


def test_events_removed_from_the_start_outside_a_purge_are_found(
        cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    events = stored(db, busy.org.id)
    as_attacker(db, ("DELETE FROM audit_events WHERE org_id = :o AND seq <= 3", {"o": busy.org.id}),
                ("UPDATE audit_heads SET base_seq = 3, base_hash = :h WHERE org_id = :o",
                 {"h": events[2]["hash"], "o": busy.org.id}))
    result = cli("verify", "--org", busy.org.slug)
    assert result.exit_code == 1 and "BROKEN at event #4" in result.output and "unanchored" in result.output


def test_a_forged_checkpoint_is_refused(cli: Callable[..., Result], db: Database, busy: NewOrg,
                                        key: Ed25519PrivateKey) -> None:
    made = json.loads(cli("checkpoint", "--org", busy.org.slug).output)
    with db.transaction() as session:
        session.add(AuditCheckpoint(org_id=busy.org.id, seq=made["seq"], hash="0" * 64, signed_at=busy.org.created_at,
                                    key_id=made["key_id"], signature=made["signature"], reason="manual"))
    result = cli("verify", "--org", busy.org.slug)
    assert result.exit_code == 1 and "forged" in result.output, result.output


# --- the same kinds, in an exported JSON Lines file ---------------------------------------------


def tamper_file(kind: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs = [json.loads(json.dumps(doc)) for doc in docs]
    target = docs[K - 1]
    if kind == "edited":
        target["changes"] = {"name": "Payroll"}
    elif kind == "edited and re-hashed":
        target["actor"]["display"] = "mallory"
        target["hash"] = event_hash(hashed_fields(target))
    elif kind == "deleted":
        del docs[K - 1]
    elif kind == "inserted":
        forged = {**json.loads(json.dumps(target)), "id": "f0f0f0f0-0000-4000-8000-000000000000",
                  "action": "user.created", "prev_hash": docs[K - 2]["hash"]}
        forged["hash"] = event_hash(hashed_fields(forged))
        for doc in docs[K - 1:]:
            doc["seq"] += 1
        docs.insert(K - 1, forged)
    elif kind == "reordered":
        docs[K - 1], docs[K] = docs[K], docs[K - 1]
    else:
        raise AssertionError(kind)
    return docs


FILE_KINDS = {**KINDS, "reordered": (K + 1, "reordered")}  # the first line out of place is #K+1


@pytest.mark.parametrize("kind", FILE_KINDS)
def test_tampered_export_is_found_and_first_broken_event_named(
        kind: str, cli: Callable[..., Result], busy: NewOrg, exported: Path) -> None:
    write_lines(exported, tamper_file(kind, read_lines(exported)))
    result = cli("verify", "--org", busy.org.slug, str(exported))
    seq, word = FILE_KINDS[kind]
    assert result.exit_code == 1, result.output
    assert f"BROKEN at event #{seq}" in result.output and word in result.output, result.output


def test_rewritten_export_is_caught_by_the_checkpoint_signed_at_export(
        cli: Callable[..., Result], busy: NewOrg, exported: Path) -> None:
    docs = read_lines(exported)
    docs[K - 1]["actor"]["display"] = "mallory"
    prev = docs[K - 2]["hash"]
    for doc in docs[K - 1:]:
        doc["prev_hash"] = prev
        doc["hash"] = prev = event_hash(hashed_fields(doc))
    write_lines(exported, docs)
    result = cli("verify", "--org", busy.org.slug, str(exported))
    assert result.exit_code == 1 and "rewritten" in result.output, result.output
    # the export's checkpoint covers every event but the last, audit.checkpoint_created, its own record
    assert docs[-1]["action"] == "audit.checkpoint_created"
    assert f"BROKEN at event #{docs[-2]['seq']}" in result.output


def test_a_line_that_is_not_an_event_is_reported(cli: Callable[..., Result], busy: NewOrg, exported: Path) -> None:
    exported.write_text(exported.read_text() + "not json\n")
    result = cli("verify", "--org", busy.org.slug, str(exported))
    assert result.exit_code == 1 and "malformed" in result.output


def test_append_only_triggers_refuse_update_and_delete(db: Database, busy: NewOrg) -> None:
    for statement in ("UPDATE audit_events SET actor_display = 'x' WHERE org_id = :o",
                      "DELETE FROM audit_events WHERE org_id = :o",
                      "UPDATE audit_checkpoints SET hash = 'x' WHERE org_id = :o",
                      "DELETE FROM audit_checkpoints WHERE org_id = :o"):
        with pytest.raises(Exception, match="append-only"), db.begin() as conn:
            conn.execute(text("INSERT INTO audit_checkpoints (org_id, seq, hash, signed_at, key_id, signature, reason) "
                              "VALUES (:o, 0, 'h', '2026-01-01 00:00:00.000000', 'k', 's', 'manual')"), {"o": busy.org.id})
            conn.execute(text(statement), {"o": busy.org.id})
