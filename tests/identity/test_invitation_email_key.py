"""One pending invitation per address, the address compared by its key (identity.names.name_key, kept
in `invitations.email_key`, migration 0025) as a member's addresses are, through an index, and kept
when two admins send at once (DESIGN.md 3.1, 3.6)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, inspect, text

from audit import Actor, clock
from audit.models import UTCDateTime
from identity import invitations
from identity.db import Database
from identity.errors import Conflict
from identity.migrate import downgrade, upgrade
from identity.models import Invitation
from identity.orgs import NewOrg
from tests.factories import in_thread

# (sent first, sent second): one address, differing only by case or Unicode form. `lower()` tells
# each pair apart (SQLite's lower() folds ASCII only; neither composes nor folds ß to ss).
SAME_ADDRESS = [
    ("new@acme.test", "NEW@Acme.TEST"),
    ("\u00c9va@acme.test", "\u00e9va@acme.test"),  # É, é: SQLite's lower() leaves É
    ("andr\u00e9@acme.test", "andre\u0301@acme.test"),  # é composed, e + combining acute
    ("stra\u00dfe@acme.test", "STRASSE@acme.test"),  # ß folds to ss
    ("\u01c4ana@acme.test", "\u01c6ana@acme.test"),  # Ǆ, ǆ
]


def _invite(db: Database, actor: Actor, org_id: str, email: str) -> Invitation:
    with db.transaction() as session:
        return invitations.invite(session, actor, org_id, email=email)[0]


def _pending(db: Database, org_id: str) -> list[str]:
    with db.reading() as session:
        return sorted(each.email for each in session.query(Invitation).filter(
            Invitation.org_id == org_id, invitations.status_is(invitations.InvitationStatus.PENDING)))


@pytest.mark.parametrize(("first", "second"), SAME_ADDRESS)
def test_an_address_differing_only_by_case_or_unicode_form_is_refused_as_already_invited(
        db: Database, system: Actor, acme: NewOrg, first: str, second: str) -> None:
    sent = _invite(db, system, acme.org.id, first)
    with db.reading() as session, pytest.raises(Conflict, match="pending invitation") as checked:
        invitations.check_invitation(session, system, acme.org.id, email=second)
    assert checked.value.context["invitation_id"] == sent.id
    with db.transaction() as session, pytest.raises(Conflict, match="pending invitation") as refused:
        invitations.invite(session, system, acme.org.id, email=second)
    assert refused.value.context["invitation_id"] == sent.id
    assert _pending(db, acme.org.id) == [first]


def test_other_addresses_and_other_orgs_are_not_taken_for_it(db: Database, system: Actor, acme: NewOrg) -> None:
    """The key is the whole address, and it is the org's: `andre@` is not `andré@`, nor another org's invitee."""
    from identity import orgs
    _invite(db, system, acme.org.id, "andr\u00e9@acme.test")
    _invite(db, system, acme.org.id, "andre@acme.test")
    with db.transaction() as session:
        other = orgs.create_org(session, system, "Other", owner_email="owner@other.test")
    _invite(db, system, other.org.id, "ANDRE\u0301@acme.test")


def test_the_key_follows_the_address_on_every_assignment(db: Database, system: Actor, acme: NewOrg) -> None:
    sent = _invite(db, system, acme.org.id, "Andre\u0301@Acme.test")
    with db.reading() as session:
        assert session.get_one(Invitation, sent.id).email_key == "andr\u00e9@acme.test"
    assert Invitation(email="STRA\u00dfE@x.test").email_key == "strasse@x.test"


def test_an_expired_invitation_is_not_resent_while_its_address_has_a_newer_one_pending(
        db: Database, system: Actor, acme: NewOrg) -> None:
    """Resending makes an expired invitation pending again: once its address has been invited anew,
    that would be two pending invitations (two links, two seats counted) for one person."""
    old = _invite(db, system, acme.org.id, "new@acme.test")
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        newer = _invite(db, system, acme.org.id, "New@Acme.test")
        with db.transaction() as session, pytest.raises(Conflict, match="pending invitation") as refused:
            invitations.resend(session, system, acme.org.id, old.id)
        assert refused.value.context["invitation_id"] == newer.id
        with db.transaction() as session:  # the pending one is resent as ever
            invitations.resend(session, system, acme.org.id, newer.id)
        assert _pending(db, acme.org.id) == ["New@Acme.test"]
        with db.transaction() as session:
            invitations.revoke(session, system, acme.org.id, newer.id)
        with db.transaction() as session:  # none pending: the old one may be sent again
            invitations.resend(session, system, acme.org.id, old.id)
        assert _pending(db, acme.org.id) == ["new@acme.test"]


def _lookup_statement(db: Database, system: Actor, org_id: str, email: str) -> tuple[str, Any]:
    """The statement (and its parameters) check_invitation sends to find a pending invitation."""
    sent: list[tuple[str, Any]] = []

    def collect(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        if "FROM invitations" in statement:
            sent.append((statement, parameters))
    event.listen(db.engine, "before_cursor_execute", collect)
    try:
        with db.reading() as session:
            invitations.check_invitation(session, system, org_id, email=email)
    finally:
        event.remove(db.engine, "before_cursor_execute", collect)
    assert len(sent) == 1, sent
    return sent[0]


def test_the_pending_lookup_reads_the_index_on_the_org_and_key(db: Database, system: Actor, acme: NewOrg) -> None:
    """SQLite's plan as it is; PostgreSQL's with sequential scans off (for 50 rows a scan is cheapest):
    of its indexes, the one on (org_id, email_key)."""
    for i in range(50):
        _invite(db, system, acme.org.id, f"person{i}@acme.test")
    statement, parameters = _lookup_statement(db, system, acme.org.id, "Someone@acme.test")
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}",
                                                                           parameters))
            assert "USING INDEX ix_invitations_org_email_key (org_id=? AND email_key=?)" in plan, plan
            return
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        plan = " | ".join(row[0] for row in conn.exec_driver_sql(f"EXPLAIN {statement}", parameters))
    assert "ix_invitations_org_email_key" in plan and "email_key" in plan.split("Index Cond")[1], plan


def _until_waiting_or_done(db: Database, thread: threading.Thread) -> None:
    """Return once `thread`'s transaction waits for a lock of this test's database, or has ended."""
    deadline = time.monotonic() + 10
    with db.engine.connect() as conn:
        while thread.is_alive() and time.monotonic() < deadline:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                 "AND datname = current_database()")).scalar_one():
                return
            conn.rollback()  # PostgreSQL keeps one snapshot of pg_stat_activity per transaction
            time.sleep(0.02)


@pytest.mark.postgres_only("two write transactions at once; SQLite runs one at a time")
@pytest.mark.parametrize("late", ["invite", "resend"])
def test_two_admins_inviting_one_address_at_once_make_one_pending_invitation(
        db: Database, system: Actor, acme: NewOrg, late: str) -> None:
    """Admin A's invitation of new@ is written, not committed, when admin B invites NEW@ (or resends an
    expired invitation of it). B's check must not run on what it read before A committed: B waits for
    the org's lock A holds, then reads A's invitation and is refused. One pending invitation, one mail."""
    old = _invite(db, system, acme.org.id, "new@acme.test") if late == "resend" else None
    errors: list[BaseException] = []

    def second() -> None:
        with db.transaction() as session:
            if old is not None:
                invitations.resend(session, system, acme.org.id, old.id)
            else:
                invitations.invite(session, system, acme.org.id, email="NEW@Acme.test")
    with clock.frozen_at(clock.now() + dt.timedelta(days=8)):
        with db.transaction() as session:
            invitations.invite(session, system, acme.org.id, email="new@acme.test")
            session.flush()
            thread = in_thread(second, errors)
            _until_waiting_or_done(db, thread)  # without a lock to wait for, B commits a second one here
        thread.join(30)
        assert not thread.is_alive(), f"the second admin's {late} never finished"
        assert [type(error) for error in errors] == [Conflict], errors
        assert _pending(db, acme.org.id) == ["new@acme.test"]
    with db.reading() as session:
        mails = session.execute(text("SELECT count(*) FROM outbox_mails WHERE kind = 'invitation'")).scalar_one()
    assert mails == (2 if late == "resend" else 1)  # the expired one's first mail is not this race's


OLD_INVITATIONS = sa.table(
    "invitations", *(sa.column(name) for name in ("id", "org_id", "email", "role", "team_id", "prefix",
                                                   "secret_hash", "status", "invited_by")),
    sa.column("created_at", UTCDateTime()), sa.column("expires_at", UTCDateTime()))
INVITATIONS = [("i1", "Ann@Acme.test"), ("i2", "andre\u0301@acme.test"), ("i3", "STRA\u00dfE@acme.test")]


def test_0025_keys_existing_invitations_and_goes_back(db_url: str, system: Actor) -> None:
    from identity import orgs
    first = Database(db_url)
    with first.transaction() as session:
        acme = orgs.create_org(session, system, "Acme", owner_email="owner@acme.test")
        org_id, team_id, owner_id = acme.org.id, acme.default_team_id, acme.owner.id
    first.dispose()
    downgrade(db_url, "0024")
    before = Database(db_url)
    now = dt.datetime.now(dt.UTC)
    with before.begin() as conn:  # the table as 0024 left it: no email_key
        conn.execute(sa.insert(OLD_INVITATIONS), [
            {"id": iid, "org_id": org_id, "email": email, "role": "member", "team_id": team_id,
             "prefix": f"inv_{iid}", "secret_hash": "x", "status": "pending", "invited_by": owner_id,
             "created_at": now, "expires_at": now + dt.timedelta(days=7)} for iid, email in INVITATIONS])
    before.dispose()
    upgrade(db_url, "0025")
    migrated = Database(db_url)
    with migrated.engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, email_key FROM invitations")).all())
    assert keys == {"i1": "ann@acme.test", "i2": "andr\u00e9@acme.test", "i3": "strasse@acme.test"}
    with migrated.reading() as session, pytest.raises(Conflict) as refused:
        invitations.check_invitation(session, system, org_id, email="ANDR\u00c9@acme.test")
    assert refused.value.context["invitation_id"] == "i2"
    migrated.dispose()

    downgrade(db_url, "0024")
    back = Database(db_url)
    assert "email_key" not in {column["name"] for column in inspect(back.engine).get_columns("invitations")}
    assert "ix_invitations_org_email_key" not in {index["name"] for index in inspect(back.engine).get_indexes(
        "invitations")}
    back.dispose()
    upgrade(db_url)
