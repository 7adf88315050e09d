"""`identity billing check`: recompute seats and charges from memberships and the ledger, and the
teams' wallets from theirs (identity.wallet_check)."""

from __future__ import annotations

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from identity.models import Org, SeatCharge, User
from identity.seats import months_between, prorated_cents
from identity.vocabulary import ChargeKind
from identity.wallet_check import check_wallets


def check_org(session: Session, org_id: str) -> list[str]:
    """Return every disagreement between the org's seat counters, its members and its ledger."""
    org = session.get(Org, org_id)
    if org is None:
        return [f"no org {org_id}"]
    problems: list[str] = []
    live = and_(User.active.is_(True), User.deleted_at.is_(None))
    seated = session.scalar(select(func.count()).where(User.org_id == org_id, User.has_seat.is_(True))) or 0
    if seated != org.seats_used:
        problems.append(f"seats_used is {org.seats_used} but {seated} members hold a seat")
    for user_name, active, deleted, has_seat in session.execute(
        select(User.user_name, User.active, User.deleted_at, User.has_seat).where(
            User.org_id == org_id, live != User.has_seat).limit(50)
    ):
        state = "active" if active and deleted is None else "inactive or deleted"
        problems.append(f"member {user_name} is {state} but {'holds' if has_seat else 'has no'} seat")
    if org.seats_used > org.included_seats + org.purchased_seats:
        problems.append(f"{org.seats_used} seats used exceed capacity {org.included_seats} + {org.purchased_seats}")
    problems += _check_ledger(session, org)
    return problems + check_wallets(session, org_id)


def _check_ledger(session: Session, org: Org) -> list[str]:
    problems = []
    charges = list(session.scalars(select(SeatCharge).where(SeatCharge.org_id == org.id)
                                   .order_by(SeatCharge.created_at, SeatCharge.id)))
    for charge in charges:
        if charge.kind == ChargeKind.SEAT_PURCHASE:
            expected = prorated_cents(charge.unit_price_cents, charge.cycle_start, charge.cycle_end, charge.created_at)
        else:
            expected = charge.seats * charge.unit_price_cents
        if charge.amount_cents != expected:
            problems.append(f"charge {charge.id} ({charge.kind}) is {charge.amount_cents} cents, expected {expected}")
    current = [c for c in charges if c.cycle_start == org.cycle_start]
    purchased = sum(c.seats for c in current)
    if purchased != org.purchased_seats:
        problems.append(f"purchased_seats is {org.purchased_seats} but the ledger holds {purchased} for this cycle")
    renewals = {c.cycle_start for c in charges if c.kind == ChargeKind.SEAT_RENEWAL}
    expected_renewals = months_between(org.created_at, org.cycle_start)
    if len(renewals) != expected_renewals:
        problems.append(f"{len(renewals)} renewals in the ledger, expected {expected_renewals} since the org began")
    return problems
