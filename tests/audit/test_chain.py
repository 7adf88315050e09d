"""The chain itself: parallel writers never fork it, time never runs backwards along it, a time
range exports as a contiguous piece that verifies on its own, and checkpoints prove history."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from audit import Actor, clock, record
from audit.checkpoints import is_authentic, sign_head
from audit.events import Selection, document, iter_export_rows, iter_rows
from audit.export import jsonl_line
from audit.log import Target
from audit.models import AuditCheckpoint, AuditEvent, AuditHead
from audit.verify import verify_database
from identity import teams, users
from identity.db import Database
from identity.orgs import NewOrg
from identity.service import run
from tests.audit.conftest import as_attacker, read_lines
from tests.factories import provision

WRITERS, EACH = 16, 12


@pytest.mark.postgres_only("its row locks are what is tested; SQLite runs one writer at a time")
def test_parallel_writers_never_fork_the_chain(db: Database, acme: NewOrg, system: Actor,
                                               key: Ed25519PrivateKey) -> None:
    def write(worker: int) -> None:
        for number in range(EACH):
            if number % 3 == 0:
                run(db, system, users.provision_user, acme.org.id, user_name=f"u{worker}-{number}@acme.test",
                    source="scim")
            else:
                run(db, system, teams.create_team, acme.org.id, f"team {worker}-{number}")
            if number == EACH // 2:
                with db.transaction() as session:  # checkpoints signed while others append
                    sign_head(session, key, acme.org.id, "scheduled")

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(write, range(WRITERS)))
    with db.reading() as session:
        seqs = list(session.scalars(select(AuditEvent.seq).where(AuditEvent.org_id == acme.org.id)
                                    .order_by(AuditEvent.seq)))
        head = session.get_one(AuditHead, acme.org.id)
        signed_at = set(session.scalars(select(AuditCheckpoint.seq).where(AuditCheckpoint.org_id == acme.org.id)))
        report = verify_database(session, acme.org.id, key.public_key())
    # 4 events of the org, then per worker 4 provisionings (user + seat, maybe a purchase) and 8 teams
    assert seqs == list(range(1, len(seqs) + 1)) and head.seq == len(seqs) >= 4 + WRITERS * (4 * 2 + 8)
    assert report.intact and report.checked == len(seqs), report.summary()
    assert sorted(report.checkpoints_matched) == sorted(signed_at) and len(signed_at) > 1  # two may share a head


def test_time_never_runs_backwards_along_the_chain(db: Database, acme: NewOrg, system: Actor) -> None:
    """A writer that recorded earlier may commit later: its event takes its predecessor's time."""
    late = clock.now() + dt.timedelta(hours=1)
    with clock.frozen_at(late), db.transaction() as session:
        teams.create_team(session, system, acme.org.id, "From the future")
    with db.transaction() as session:
        teams.create_team(session, system, acme.org.id, "Now")
    with db.reading() as session:
        times = [row.occurred_at for row in iter_rows(session, Selection(acme.org.id))]
    assert times == sorted(times) and times[-1] == late


def test_a_time_range_export_verifies_on_its_own_and_against_a_checkpoint(
        cli: Callable[..., Result], db: Database, system: Actor, tmp_path: Path) -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    from identity import orgs
    for day in range(6):
        with clock.frozen_at(start + dt.timedelta(days=day)), db.transaction() as session:
            if day == 0:
                org_id = orgs.create_org(session, system, "Ranged", owner_email="o@ranged.test").org.id
            teams.create_team(session, system, org_id, f"Day {day}")
        if day == 3:
            assert cli("checkpoint", "--org", "ranged").exit_code == 0
    path = tmp_path / "range.jsonl"
    result = cli("export", "--org", "ranged", "--since", "2026-03-02T00:00:00Z", "--until", "2026-03-05", "-o",
                 str(path))
    assert result.exit_code == 0, result.output
    docs = read_lines(path)
    assert [d["changes"]["name"] for d in docs] == ["Day 1", "Day 2", "Day 3"]
    assert docs[0]["seq"] > 1
    verified = cli("verify", "--org", "ranged", str(path))
    assert verified.exit_code == 0, verified.output
    assert f"intact: 3 events #{docs[0]['seq']}..#{docs[-1]['seq']}" in verified.output
    assert "1 signed checkpoint(s) matched" in verified.output  # the one signed after day 3


def test_an_auditor_kept_checkpoint_proves_history_was_not_rewritten(
        cli: Callable[..., Result], client, admin_key: str, db: Database, busy: NewOrg, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {admin_key}"}
    kept = client.post(f"/api/v1/orgs/{busy.org.slug}/audit-checkpoints", headers=auth)
    assert kept.status_code == 201
    published = client.get("/api/v1/audit/public-key").get_json()
    (tmp_path / "kept.json").write_text(json.dumps(kept.get_json()))
    (tmp_path / "service.pem").write_text(published["public_key_pem"])
    from audit.signing import load_public_key
    assert is_authentic(kept.get_json(), load_public_key(published["public_key_pem"]))
    args = ("verify", "--org", busy.org.slug, "--checkpoint", str(tmp_path / "kept.json"),
            "--public-key", str(tmp_path / "service.pem"))
    assert cli(*args).exit_code == 0

    # Someone with the database rewrites history, re-hashes everything, and erases every stored checkpoint.
    with db.reading() as session:
        rows = [dict(r._mapping) for r in iter_rows(session, Selection(busy.org.id))]
    from audit.log import event_hash
    prev = rows[1]["hash"]
    statements = []
    for row in rows[2:]:
        row = {**row, "prev_hash": prev, "actor_display": "mallory"}
        row["hash"] = prev = event_hash(row)
        statements.append(("UPDATE audit_events SET actor_display = 'mallory', prev_hash = :p, hash = :h "
                           "WHERE org_id = :o AND seq = :s", {"p": row["prev_hash"], "h": row["hash"],
                                                              "o": busy.org.id, "s": row["seq"]}))
    statements.append(("UPDATE audit_heads SET hash = :h WHERE org_id = :o", {"h": prev, "o": busy.org.id}))
    as_attacker(db, *statements)
    with db.begin() as conn:
        if db.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_checkpoints_no_delete")
        conn.exec_driver_sql("DELETE FROM audit_checkpoints")
    assert cli("verify", "--org", busy.org.slug).exit_code == 0  # the database alone now looks intact
    caught = cli(*args)
    assert caught.exit_code == 1 and "rewritten" in caught.output, caught.output


def test_export_rows_have_the_public_shape(db: Database, acme: NewOrg, system: Actor) -> None:
    """The fast export line and the API's document are the same event, odd characters included."""
    tricky = 'Zoë "quoted" \\ back\nslash \u2028 =1+2'
    provision(db, system, acme.org.id, "zoe@acme.test", display_name=tricky)
    with db.transaction() as session:
        teams.create_team(session, system, acme.org.id, tricky.replace("\n", " "))
    with db.reading() as session:
        lines = [json.loads(jsonl_line(row)) for row in iter_export_rows(session, Selection(acme.org.id))]
        docs = [document(row) for row in iter_rows(session, Selection(acme.org.id))]
    assert lines == docs
    assert any(d["target"]["display"].startswith('Zoë "quoted" \\ back slash') for d in docs)


def test_keyset_batches_read_every_event_once(db: Database, busy: NewOrg) -> None:
    with db.reading() as session:
        seqs = [row.seq for row in iter_rows(session, Selection(busy.org.id), batch=5)]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 16


def test_deleting_a_user_keeps_its_events_and_audit_tables_have_no_foreign_keys(
        cli, db: Database, acme: NewOrg, system: Actor) -> None:
    bob = provision(db, system, acme.org.id, "bob@acme.test")
    with db.transaction() as session:
        users.delete_user(session, system, acme.org.id, bob.id)
    with db.reading() as session:
        about_bob = list(session.scalars(select(AuditEvent.action).where(AuditEvent.target_id == bob.id)
                                         .order_by(AuditEvent.seq)))
    assert about_bob == ["user.created", "seat.assigned", "seat.released", "user.deleted"]
    assert cli("verify", "--org", acme.org.slug).exit_code == 0
    from audit.models import Base
    audit_tables = [t for name, t in Base.metadata.tables.items() if name.startswith("audit_")]
    assert len(audit_tables) == 4 and not any(t.foreign_keys for t in audit_tables)  # nothing cascades into them


@pytest.mark.parametrize("events", [1, 3, 300])
def test_a_transaction_of_any_size_extends_the_chain_intact(db: Database, acme: NewOrg, system: Actor,
                                                            key: Ed25519PrivateKey, events: int) -> None:
    # PostgreSQL writes up to 256 events with the head's move in one statement, more in two.
    for _ in range(2):
        with db.transaction() as session:
            for number in range(events):
                record(session, system, "test.event", Target("org", acme.org.id, "acme"), {"n": number},
                       org_id=acme.org.id)
    with db.reading() as session:
        seqs = list(session.scalars(select(AuditEvent.seq).where(AuditEvent.org_id == acme.org.id)
                                    .order_by(AuditEvent.seq)))
        head = session.get_one(AuditHead, acme.org.id)
        report = verify_database(session, acme.org.id, key.public_key())
    assert seqs == list(range(1, len(seqs) + 1)) and head.seq == len(seqs)
    assert report.intact and report.checked == len(seqs), report.summary()
