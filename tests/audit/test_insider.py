"""A database insider: with the service's own database role, erase or rewrite history by plain SQL.

The triggers refuse what they can; what someone who owns the tables can still do (disable a
trigger, or imitate the purge), `identity audit verify` with a kept checkpoint and the public
key reports, and exits non-zero. docs/audit.md, "Threat model".
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, insert, select, text

from audit import clock
from audit.actor import Actor
from audit.checkpoints import document, is_authentic, signed_reason
from audit.events import Selection, iter_rows, row_fields
from audit.log import event_hash
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.retention import purge_org
from audit.verify import verify_database
from identity import orgs, teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.audit.conftest import as_attacker
from tests.audit.test_retention import NOW, make_history


def stored(db: Database, org_id: str) -> list[dict[str, Any]]:
    with db.reading() as session:
        return [row_fields(row) for row in iter_rows(session, Selection(org_id))]


def new_team(db: Database, system: Actor, org_id: str, name: str) -> None:
    with db.transaction() as session:
        teams.create_team(session, system, org_id, name)


# --- what the triggers refuse to the service's own role -----------------------------------------

PURGE_LEAVE = "SELECT set_config('identity.audit_purge', :o, true)"
REFUSED = {  # attempt -> statements, run in one transaction by the service's own connection
    "delete events": ["DELETE FROM audit_events WHERE org_id = :o"],
    "rewrite an event": ["UPDATE audit_events SET actor_display = 'mallory' WHERE org_id = :o AND seq = 3"],
    "the row the old trigger trusted": ["INSERT INTO audit_purge_permits (org_id) VALUES (:o)",
                                        "DELETE FROM audit_events WHERE org_id = :o AND seq <= 3"],
    "truncate the events": ["TRUNCATE audit_events"],
    "truncate the checkpoints": ["TRUNCATE audit_checkpoints"],
    "the purge's leave, base not moved": [PURGE_LEAVE, "DELETE FROM audit_events WHERE org_id = :o AND seq <= 3"],
    "the purge's leave, events after the base": [
        "UPDATE audit_heads SET base_seq = 3 WHERE org_id = :o", PURGE_LEAVE,
        "DELETE FROM audit_events WHERE org_id = :o AND seq > 3"],
}


@pytest.mark.postgres_only("the purge's leave is a PostgreSQL transaction-local setting; TRUNCATE is PostgreSQL's")
@pytest.mark.parametrize("attempt", REFUSED)
def test_the_services_own_role_cannot_delete_rewrite_or_truncate_events(
        attempt: str, db: Database, busy: NewOrg, key: Ed25519PrivateKey) -> None:
    before = stored(db, busy.org.id)
    with pytest.raises(Exception, match="append-only"), db.begin() as conn:
        for statement in REFUSED[attempt]:
            conn.execute(text(statement), {"o": busy.org.id})
    assert stored(db, busy.org.id) == before
    with db.reading() as session:
        assert verify_database(session, busy.org.id, key.public_key()).intact


def test_a_purge_permit_row_lets_through_no_event_after_the_chains_base(db: Database, busy: NewOrg) -> None:
    """SQLite keeps the permit row (it has no transaction-local settings); it no longer suffices alone."""
    before = stored(db, busy.org.id)
    with pytest.raises(Exception, match="append-only"), db.begin() as conn:
        conn.execute(text("INSERT INTO audit_purge_permits (org_id) VALUES (:o)"), {"o": busy.org.id})
        conn.execute(text("DELETE FROM audit_events WHERE org_id = :o AND seq <= 3"), {"o": busy.org.id})
    assert stored(db, busy.org.id) == before


# --- what an insider can still do, and verify reports -------------------------------------------

def auditors_history(cli: Callable[..., Result], db: Database, system: Actor, acme: NewOrg,
                     tmp_path: Path) -> tuple[list[str], dict[str, Any]]:
    """An auditor keeps acme's checkpoint at #4 and the public key; later an hourly checkpoint is
    stored at #8. Return verify's arguments with the kept files, and the hourly checkpoint."""
    kept, pem = tmp_path / "kept.json", tmp_path / "service.pem"
    kept.write_text(cli("checkpoint", "--org", "acme").output)  # #4; its record is #5
    pem.write_text(cli("public-key").output)
    for number in range(3):
        new_team(db, system, acme.org.id, f"Team {number}")  # #6..#8
    hourly = json.loads(cli("checkpoint").output)  # every org's head: #8; its record #9
    for number in range(2):
        new_team(db, system, acme.org.id, f"Later {number}")  # #10, #11
    assert json.loads(kept.read_text())["seq"] == 4 and hourly["seq"] == 8
    return ["verify", "--org", "acme", "--checkpoint", str(kept), "--public-key", str(pem), "--no-reconcile"], hourly


def forged_purge_event(events: list[dict[str, Any]], base: dict[str, Any]) -> dict[str, Any]:
    """An `audit.purged` event appended at the head, claiming the start moved to `base`, hashed right."""
    last = events[-1]
    forged = {**last, "id": str(uuid.uuid4()), "seq": last["seq"] + 1, "prev_hash": last["hash"],
              "action": "audit.purged", "target_type": "audit_log", "target_id": last["org_id"],
              "target_display": "audit log", "outcome": "success",
              "changes": {"base_seq": {"before": 0, "after": base["seq"]}, "base_hash": base["hash"]}}
    forged["hash"] = event_hash(forged)
    return forged


def move_the_start(db: Database, how: str, org_id: str, base: dict[str, Any],
                   extra: list[tuple[Any, dict[str, Any]]]) -> None:
    """Delete the events up to `base` and start the chain there, as an insider would."""
    statements: list[tuple[Any, dict[str, Any]]] = [
        ("UPDATE audit_heads SET base_seq = :s, base_hash = :h WHERE org_id = :o",
         {"s": base["seq"], "h": base["hash"], "o": org_id}),
        ("DELETE FROM audit_events WHERE org_id = :o AND seq <= :s", {"o": org_id, "s": base["seq"]}),
        *extra]
    if how == "triggers disabled":
        as_attacker(db, *statements)
        return
    with db.begin() as conn:  # no DDL: the purge's own leave, which any session of the role can set
        conn.execute(text(PURGE_LEAVE), {"o": org_id})
        for statement, params in statements:
            run(conn, statement, params)


def run(conn: Connection, statement: Any, params: dict[str, Any]) -> None:
    conn.execute(text(statement) if isinstance(statement, str) else statement, params)


ATTACKS = {  # what the insider adds to moving the start -> what verify says
    "start moved": ("unanchored", "you kept for #4"),
    "start moved, audit.purged forged": ("unanchored", "you kept for #4"),
    "start moved, audit.purged forged, hourly checkpoint relabelled purge": ("forged", "signature"),
}


@pytest.mark.parametrize("how", ["triggers disabled", "the purge's leave"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_an_insider_who_moves_the_chains_start_is_caught_by_the_checkpoint_an_auditor_kept(
        attack: str, how: str, cli: Callable[..., Result], db: Database, system: Actor, acme: NewOrg,
        tmp_path: Path) -> None:
    if how == "the purge's leave" and db.dialect != "postgresql":
        pytest.skip("the purge's leave is a PostgreSQL setting; on SQLite the file's holder needs none")
    args, hourly = auditors_history(cli, db, system, acme, tmp_path)
    assert cli(*args).exit_code == 0
    events = stored(db, acme.org.id)
    base = events[hourly["seq"] - 1]  # the start moved to where a signed (hourly) checkpoint stands
    extra: list[tuple[Any, dict[str, Any]]] = []
    if "forged" in attack:
        forged = forged_purge_event(events, base)
        extra += [(insert(AuditEvent), forged),
                  ("UPDATE audit_heads SET seq = :s, hash = :h WHERE org_id = :o",
                   {"s": forged["seq"], "h": forged["hash"], "o": acme.org.id})]
    if "relabelled" in attack:
        extra.append((insert(AuditCheckpoint), {
            "org_id": acme.org.id, "seq": hourly["seq"], "hash": hourly["hash"], "key_id": hourly["key_id"],
            "signed_at": dt.datetime.fromisoformat(hourly["time"].replace("Z", "+00:00")),
            "signature": hourly["signature"], "reason": "purge"}))
    move_the_start(db, how, acme.org.id, base, extra)

    result = cli(*args)
    kind, words = ATTACKS[attack]
    assert result.exit_code == 1, result.output
    assert "BROKEN" in result.output and kind in result.output and words in result.output, result.output


def test_a_history_rewritten_and_its_stored_checkpoints_erased_is_caught_by_a_kept_checkpoint(
        cli: Callable[..., Result], db: Database, system: Actor, acme: NewOrg, tmp_path: Path) -> None:
    args, _hourly = auditors_history(cli, db, system, acme, tmp_path)
    events = stored(db, acme.org.id)
    prev, statements = events[1]["hash"], []
    for event in events[2:]:  # #3 rewritten, every later hash recomputed, the head moved to match
        event = {**event, "prev_hash": prev, "actor_display": "mallory" if event["seq"] == 3 else event["actor_display"]}
        event["hash"] = prev = event_hash(event)
        statements.append(("UPDATE audit_events SET prev_hash = :p, hash = :h, actor_display = :d "
                           "WHERE org_id = :o AND seq = :s", {"p": event["prev_hash"], "h": event["hash"],
                                                              "d": event["actor_display"], "o": acme.org.id,
                                                              "s": event["seq"]}))
    statements.append(("UPDATE audit_heads SET hash = :h WHERE org_id = :o", {"h": prev, "o": acme.org.id}))
    with db.begin() as conn:  # the stored checkpoints go too
        if db.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_checkpoints_no_delete")
        conn.execute(text("DELETE FROM audit_checkpoints WHERE org_id = :o"), {"o": acme.org.id})
    as_attacker(db, *statements)
    assert cli("verify", "--org", "acme", "--no-reconcile").exit_code == 0  # without what the auditor kept
    result = cli(*args)
    assert result.exit_code == 1 and "BROKEN at event #4" in result.output and "rewritten" in result.output


# --- a real purge, vouched for ------------------------------------------------------------------

def test_a_purge_is_accepted_and_a_kept_checkpoint_inside_it_is_named_not_dropped(
        cli: Callable[..., Result], db: Database, system: Actor, tmp_path: Path) -> None:
    kept = tmp_path / "kept.json"
    with clock.frozen_at(NOW - dt.timedelta(days=400)), db.transaction() as session:
        org_id = orgs.create_org(session, system, "Oldco", owner_email="owner@oldco.test").org.id
        teams.create_team(session, system, org_id, "Old team")  # #1..#5
    with clock.frozen_at(NOW - dt.timedelta(days=399)):
        kept.write_text(cli("checkpoint", "--org", "oldco").output)  # #5; its record #6
    with clock.frozen_at(NOW - dt.timedelta(days=10)):
        new_team(db, system, org_id, "New team")  # #7
    assert json.loads(kept.read_text())["seq"] == 5
    with clock.frozen_at(NOW):
        assert cli("purge", "--org", "oldco").exit_code == 0  # #1..#6 go; audit.purged is #8
    with db.reading() as session:
        assert session.get_one(AuditHead, org_id).base_seq == 6
    result = cli("verify", "--org", "oldco", "--checkpoint", str(kept), "--no-reconcile")
    assert result.exit_code == 0, result.output
    assert "events up to #6 were purged, vouched for by a signed purge checkpoint and event #8" in result.output
    assert "1 signed checkpoint(s) fall inside the purged events" in result.output


def test_a_purge_whose_audit_purged_event_was_cut_off_does_not_verify(
        cli: Callable[..., Result], db: Database, system: Actor) -> None:
    org_id = make_history(db, system, "Oldco")
    with clock.frozen_at(NOW):
        assert cli("purge", "--org", "oldco").exit_code == 0
    events = stored(db, org_id)
    assert events[-1]["action"] == "audit.purged"
    as_attacker(db, ("DELETE FROM audit_events WHERE org_id = :o AND seq = :s", {"o": org_id, "s": events[-1]["seq"]}),
                ("UPDATE audit_heads SET seq = :s, hash = :h WHERE org_id = :o",
                 {"s": events[-2]["seq"], "h": events[-2]["hash"], "o": org_id}))
    result = cli("verify", "--org", "oldco", "--no-reconcile")
    assert result.exit_code == 1 and "unanchored" in result.output, result.output
    assert "no retained audit.purged event" in result.output


def test_the_purges_checkpoint_signs_its_reason(db: Database, system: Actor, key: Ed25519PrivateKey) -> None:
    """A purge checkpoint relabelled, or another relabelled `purge`, no longer carries the service's signature."""
    org_id = make_history(db, system, "Oldco")
    with clock.frozen_at(NOW), db.transaction() as session:
        purge_org(session, system, key, org_id, 365, floor_days=90)
    with db.reading() as session:
        made = document(session.scalars(select(AuditCheckpoint)).one())
    assert signed_reason(made, key.public_key()) == "purge" and is_authentic(made, key.public_key())
    relabelled = {**made, "reason": "manual"}
    assert signed_reason(relabelled, key.public_key()) is None and not is_authentic(relabelled, key.public_key())
