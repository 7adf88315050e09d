"""A checkpoint signs only a head the service has just verified, and making one is an audit event."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select

from audit import clock
from audit.actor import Actor
from audit.checkpoints import UnverifiedHead, sign_head
from audit.models import AuditCheckpoint, AuditEvent
from identity import teams
from identity.db import Database
from identity.orgs import NewOrg
from tests.audit.conftest import as_attacker
from tests.audit.test_retention import NOW, make_history
from tests.factories import actions


def checkpoint_count(db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditCheckpoint)) or 0


def edit_event(db: Database, org_id: str, seq: int) -> None:
    as_attacker(db, ("UPDATE audit_events SET actor_display = 'mallory' WHERE org_id = :o AND seq = :s",
                     {"o": org_id, "s": seq}))


def test_a_broken_chain_is_not_signed(cli: Callable[..., Result], db: Database, busy: NewOrg,
                                      key: Ed25519PrivateKey, system: Actor) -> None:
    edit_event(db, busy.org.id, 6)
    with pytest.raises(UnverifiedHead, match="BROKEN at event #6"), db.transaction() as session:
        sign_head(session, key, busy.org.id, "manual", actor=system)
    result = cli("checkpoint", "--org", busy.org.slug)
    assert result.exit_code == 1 and "no checkpoint" in result.output and "edited" in result.output, result.output
    assert checkpoint_count(db) == 0 and "audit.checkpoint_created" not in actions(db, busy.org.id)


def test_a_broken_chain_is_not_purged(cli: Callable[..., Result], db: Database, system: Actor) -> None:
    """Purging would sign the tampered event's hash into the new base: nothing is deleted or signed."""
    org_id = make_history(db, system, "Oldco")
    edit_event(db, org_id, 2)
    with clock.frozen_at(NOW):
        result = cli("purge", "--org", "oldco")
    assert result.exit_code == 1 and "nothing purged" in result.output, result.output
    assert len(actions(db, org_id)) == 7 and checkpoint_count(db) == 0


def test_creating_a_checkpoint_is_audited(cli: Callable[..., Result], db: Database, busy: NewOrg) -> None:
    made = json.loads(cli("checkpoint", "--org", busy.org.slug).output)
    with db.reading() as session:
        last = session.scalars(select(AuditEvent).where(AuditEvent.org_id == busy.org.id)
                               .order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert (last.action, last.seq, last.actor_type) == ("audit.checkpoint_created", made["seq"] + 1, "system")
    assert "identity audit checkpoint" in last.actor_display
    assert {k: last.changes[k] for k in ("seq", "hash", "reason", "key_id")} == {
        "seq": made["seq"], "hash": made["hash"], "reason": "manual", "key_id": made["key_id"]}
    again = cli("verify", "--org", busy.org.slug, "--no-reconcile")
    assert again.exit_code == 0 and "1 signed checkpoint(s) matched" in again.output, again.output


def test_the_caller_of_a_checkpoint_is_its_actor(db: Database, acme: NewOrg, key: Ed25519PrivateKey) -> None:
    owner = Actor("user", acme.owner.id, acme.owner.user_name, org_id=acme.org.id, role="owner")
    with db.transaction() as session:
        made = sign_head(session, key, acme.org.id, "manual", actor=owner)
    with db.reading() as session:
        last = session.scalars(select(AuditEvent).where(AuditEvent.org_id == acme.org.id)
                               .order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert (last.action, last.actor_id, last.changes["checkpoint_id"]) == ("audit.checkpoint_created", owner.id,
                                                                            made.id)


def test_the_periodic_job_skips_an_org_with_nothing_new_but_its_last_checkpoint(
        cli: Callable[..., Result], db: Database, acme: NewOrg, system: Actor) -> None:
    first = cli("checkpoint")
    assert first.exit_code == 0 and json.loads(first.output)["seq"] == 4
    idle = cli("checkpoint")
    assert idle.exit_code == 0 and idle.output == ""
    assert actions(db, acme.org.id).count("audit.checkpoint_created") == 1
    with db.transaction() as session:
        teams.create_team(session, system, acme.org.id, "Busy again")
    assert json.loads(cli("checkpoint").output)["seq"] == 6  # the first checkpoint's record, then the team
