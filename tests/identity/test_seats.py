"""Seats and charges (DESIGN.md 3.4): proration to the second, renewals, the cap, reuse."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from audit import Actor, clock
from audit.models import AuditEvent
from identity import orgs, seats, users
from identity.billing import check_org
from identity.db import Database
from identity.errors import SeatCapReached
from identity.models import Org, SeatCharge, User
from identity.service import run
from tests.factories import actions, counts, provision

UTC = dt.UTC


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize("anchor,months,expected", [
    (at(2026, 1, 31), 1, at(2026, 2, 28)),
    (at(2028, 1, 31), 1, at(2028, 2, 29)),     # leap year
    (at(2026, 1, 31), 2, at(2026, 3, 31)),     # back to the 31st: the anchor day, not last month's
    (at(2026, 1, 30), 1, at(2026, 2, 28)),
    (at(2026, 3, 31), 1, at(2026, 4, 30)),
    (at(2026, 12, 15, 9, 30), 1, at(2027, 1, 15, 9, 30)),
    (at(2026, 5, 31), 12, at(2027, 5, 31)),
])
def test_add_months_clamps_to_month_end(anchor: dt.datetime, months: int, expected: dt.datetime) -> None:
    assert seats.add_months(anchor, months) == expected


@pytest.mark.parametrize("anchor,moment,start,end", [
    (at(2026, 1, 31), at(2026, 2, 28), at(2026, 2, 28), at(2026, 3, 31)),
    (at(2026, 1, 31), at(2026, 2, 27, 23, 59, 59), at(2026, 1, 31), at(2026, 2, 28)),
    (at(2026, 1, 31), at(2026, 1, 31), at(2026, 1, 31), at(2026, 2, 28)),
    (at(2026, 1, 15), at(2026, 7, 20), at(2026, 7, 15), at(2026, 8, 15)),
])
def test_cycle_at(anchor, moment, start, end) -> None:
    assert seats.cycle_at(anchor, moment) == (start, end)


@pytest.mark.parametrize("start,end,moment,price,expected", [
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 1), 1000, 1000),                  # cycle start: full price
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 16), 1000, 500),                  # 15 of 30 days
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 30, 23, 59, 59), 1000, 0),        # last second: 1000/2592000
    (at(2026, 2, 1), at(2026, 3, 1), at(2026, 2, 15), 1000, 500),                  # 28-day month, 14 left
    (at(2028, 2, 1), at(2028, 3, 1), at(2028, 2, 15), 1000, 517),                  # 29 days: 15/29 = 517.24
    (at(2026, 1, 1), at(2026, 2, 1), at(2026, 1, 11), 1000, 677),                  # 31 days: 21/31 = 677.42
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 1, 0, 0, 1), 1000, 1000),         # 999.9996 rounds up
    # exactly half a cent: 3 x 1296000 / 2592000 = 1.5 -> 2 (half-up), never banker's 2 / float noise
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 16), 3, 2),
    (at(2026, 4, 1), at(2026, 5, 1), at(2026, 4, 16), 5, 3),                      # 2.5 -> 3
])
def test_prorated_cents(start, end, moment, price, expected) -> None:
    assert seats.prorated_cents(price, start, end, moment) == expected


def _org(db: Database, system: Actor, created: dt.datetime, **settings) -> orgs.NewOrg:
    with clock.frozen_at(created), db.transaction() as session:
        return orgs.create_org(session, system, "Seated", owner_email="owner@seated.test", **settings)


def _ledger(db: Database, org_id: str) -> list[tuple[str, int, int]]:
    with db.reading() as session:
        return [(c.kind, c.seats, c.amount_cents) for c in session.scalars(
            select(SeatCharge).where(SeatCharge.org_id == org_id).order_by(SeatCharge.created_at, SeatCharge.kind))]


def test_seats_beyond_included_are_bought_prorated_and_freed_seats_reused(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=2)
    with clock.frozen_at(at(2026, 4, 1, 1)):
        alice = provision(db, system, new.org.id, "alice@seated.test")   # seat 2 of 2 included
    assert _ledger(db, new.org.id) == []
    with clock.frozen_at(at(2026, 4, 16)):
        bob = provision(db, system, new.org.id, "bob@seated.test")       # seat 3: half a month
    assert _ledger(db, new.org.id) == [("seat_purchase", 1, 500)]
    with clock.frozen_at(at(2026, 4, 20)), db.transaction() as session:
        users.delete_user(session, system, new.org.id, alice.id)
    with clock.frozen_at(at(2026, 4, 21)):
        provision(db, system, new.org.id, "carol@seated.test")           # reuses the paid seat
    assert _ledger(db, new.org.id) == [("seat_purchase", 1, 500)]
    with db.reading() as session:
        org = session.get(Org, new.org.id)
        assert (org.seats_used, org.purchased_seats) == (3, 1)
        assert check_org(session, new.org.id) == []
        assert session.get(User, bob.id).has_seat
    assert actions(db, new.org.id).count("seat.purchased") == 1


def test_renewal_after_a_missed_month_charges_each_cycle_once(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 1, 31), included_seats=1)
    with clock.frozen_at(at(2026, 2, 10)):
        provision(db, system, new.org.id, "a@seated.test")
        provision(db, system, new.org.id, "b@seated.test")
    assert [k for k, _, _ in _ledger(db, new.org.id)] == ["seat_purchase", "seat_purchase"]
    # Nothing ran at the Feb 28 and Mar 31 boundaries; on Apr 5 the renewal catches up.
    with clock.frozen_at(at(2026, 4, 5)):
        first = run(db, system, seats.renew_org, new.org.id)
        again = run(db, system, seats.renew_org, new.org.id)
    assert [(c.cycle_start, c.seats, c.amount_cents) for c in first] == [
        (at(2026, 2, 28), 2, 2000), (at(2026, 3, 31), 2, 2000)]
    assert again == []
    with db.reading() as session:
        org = session.get(Org, new.org.id)
        assert (org.cycle_start, org.cycle_end, org.purchased_seats) == (at(2026, 3, 31), at(2026, 4, 30), 2)
        assert check_org(session, new.org.id) == []


def test_renewal_runs_lazily_on_the_first_seat_operation(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 2)):
        provision(db, system, new.org.id, "a@seated.test")
    with clock.frozen_at(at(2026, 5, 2)):
        provision(db, system, new.org.id, "b@seated.test")
    april, may = at(2026, 4, 1), at(2026, 5, 1)
    with db.reading() as session:
        ledger = sorted((c.cycle_start, c.kind, c.amount_cents)
                        for c in session.scalars(select(SeatCharge).where(SeatCharge.org_id == new.org.id)))
    # April: a's seat at 30/30 - 1 day; May: the renewal of that seat in full, then b's seat prorated.
    assert ledger == [(april, "seat_purchase", 967), (may, "seat_purchase", 968), (may, "seat_renewal", 1000)]
    with clock.frozen_at(at(2026, 5, 2)), db.reading() as session:
        assert check_org(session, new.org.id) == []


def test_cap_refuses_new_member_changes_nothing_and_audits_refusal(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1, max_seats=2)
    provision(db, system, new.org.id, "a@seated.test")
    before = counts(db)
    with pytest.raises(SeatCapReached) as refused:
        run(db, system, users.provision_user, new.org.id, user_name="b@seated.test", source="scim")
    assert "2 of 2" in refused.value.message
    after = counts(db)
    assert after["audit_events"] == before["audit_events"] + 1
    assert {k: v for k, v in after.items() if k != "audit_events"} == {k: v for k, v in before.items() if k != "audit_events"}
    with db.reading() as session:
        refusal = session.scalars(select(AuditEvent).where(AuditEvent.org_id == new.org.id)
                                  .order_by(AuditEvent.seq.desc())).first()
        assert (refusal.action, refusal.outcome) == ("seat.refused", "refused")


def test_cap_never_locks_out_members_who_have_a_seat(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), max_seats=2)
    a = provision(db, system, new.org.id, "a@seated.test")
    with db.transaction() as session:
        session.get(Org, new.org.id).max_seats = 1        # the owner lowered the cap below use
    with db.transaction() as session:
        users.change_role(session, system, new.org.id, a.id, "admin")  # existing members keep working
    with pytest.raises(SeatCapReached):
        provision(db, system, new.org.id, "b@seated.test")


def test_staged_inactive_user_takes_no_seat(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    staged = provision(db, system, new.org.id, "staged@seated.test", active=False, source="scim")
    assert not staged.has_seat and _ledger(db, new.org.id) == []


def test_deactivate_then_reactivate_with_free_paid_seat_charges_nothing(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 11)):
        a = provision(db, system, new.org.id, "a@seated.test")
    assert len(_ledger(db, new.org.id)) == 1
    with clock.frozen_at(at(2026, 4, 12)), db.transaction() as session:
        users.deactivate_user(session, system, new.org.id, a.id)
    with clock.frozen_at(at(2026, 4, 13)), db.transaction() as session:
        users.reactivate_user(session, system, new.org.id, a.id)
    assert len(_ledger(db, new.org.id)) == 1


def test_reactivation_when_seat_was_taken_is_charged_prorated(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 1)):
        a = provision(db, system, new.org.id, "a@seated.test")                      # buys seat, 1000
    with clock.frozen_at(at(2026, 4, 6)), db.transaction() as session:
        users.deactivate_user(session, system, new.org.id, a.id)
    with clock.frozen_at(at(2026, 4, 7)):
        provision(db, system, new.org.id, "b@seated.test")                          # takes the freed seat
    with clock.frozen_at(at(2026, 4, 16)), db.transaction() as session:
        users.reactivate_user(session, system, new.org.id, a.id)                    # 15 days left: 500
    assert _ledger(db, new.org.id) == [("seat_purchase", 1, 1000), ("seat_purchase", 1, 500)]
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        assert check_org(session, new.org.id) == []


def test_preview_for_the_invite_dialog(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=2, max_seats=10)
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        p = seats.preview(session.get(Org, new.org.id))
        assert (p.included, p.purchased, p.used, p.free, p.next_seat_cents) == (2, 0, 1, 1, 0)
    with clock.frozen_at(at(2026, 4, 16)):
        provision(db, system, new.org.id, "a@seated.test")
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        p = seats.preview(session.get(Org, new.org.id))
        assert (p.free, p.next_seat_cents, p.cycle_end, p.max_seats) == (0, 500, at(2026, 5, 1), 10)


def test_billing_check_finds_counter_and_ledger_mismatches(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 4, 1), included_seats=1)
    with clock.frozen_at(at(2026, 4, 16)):
        provision(db, system, new.org.id, "a@seated.test")
    with db.transaction() as session:   # a change that bypassed the seat service
        org = session.get(Org, new.org.id)
        org.seats_used = 5
        session.scalars(select(SeatCharge)).one().amount_cents = 499
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        problems = check_org(session, new.org.id)
    assert any("seats_used is 5 but 2" in p for p in problems)
    assert any("is 499 cents, expected 500" in p for p in problems)


def test_seat_changes_in_one_transaction_keep_the_locked_org_equal_to_its_row(db: Database, system: Actor) -> None:
    # The counters are written with plain statements and the locked Org kept in step in memory;
    # a second lock in the same transaction re-reads the row, and both must agree throughout.
    new = _org(db, system, at(2026, 4, 1), included_seats=2)
    with clock.frozen_at(at(2026, 4, 16)), db.transaction() as session:
        a = users.provision_user(session, system, new.org.id, user_name="a@seated.test", source="scim")
        users.provision_user(session, system, new.org.id, user_name="b@seated.test", source="scim")  # buys one
        users.delete_user(session, system, new.org.id, a.id)
        users.provision_user(session, system, new.org.id, user_name="c@seated.test", source="scim")  # reuses it
        org = seats.lock_org(session, new.org.id)
        assert (org.seats_used, org.purchased_seats) == (3, 1)
        stored = session.execute(select(Org.__table__.c.seats_used, Org.__table__.c.purchased_seats)
                                 .where(Org.__table__.c.id == new.org.id)).one()
        assert tuple(stored) == (3, 1)
    assert _ledger(db, new.org.id) == [("seat_purchase", 1, 500)]
    with clock.frozen_at(at(2026, 4, 16)), db.reading() as session:
        assert check_org(session, new.org.id) == []


def test_a_deleted_org_is_never_renewed(db: Database, system: Actor) -> None:
    new = _org(db, system, at(2026, 1, 31), included_seats=1)
    with clock.frozen_at(at(2026, 2, 10)):
        provision(db, system, new.org.id, "a@seated.test")
    with db.transaction() as session:
        session.get_one(Org, new.org.id).deleted_at = at(2026, 2, 20)
    with clock.frozen_at(at(2026, 4, 5)):
        assert run(db, system, seats.renew_org, new.org.id) == []
    assert [k for k, _, _ in _ledger(db, new.org.id)] == ["seat_purchase"]
