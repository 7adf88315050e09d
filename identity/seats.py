"""Seats and their charges (DESIGN.md section 3.4): the one way a member takes or frees a seat.

Every change here happens under a lock on the org row (`FOR NO KEY UPDATE` on PostgreSQL; on
SQLite every write transaction already holds the database's write lock), so that parallel
provisioning never overruns the cap and never buys two seats where one was needed. The lock is
taken before anything else the transaction locks, and the audit chain head after it at commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, event, insert, inspect, select, update
from sqlalchemy.orm import Session, SessionTransaction, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from audit import Actor, clock, record
from audit.log import Target
from identity import wallets
from identity.actions import Action
from identity.cycles import add_months as add_months
from identity.cycles import cycle_at as cycle_at
from identity.errors import NotFound, SeatCapReached
from identity.model_base import bound_columns
from identity.models import Org, SeatCharge, User
from identity.vocabulary import ChargeKind


def prorated_cents(price_cents: int, start: dt.datetime, end: dt.datetime, moment: dt.datetime) -> int:
    """Return price x (end - moment) / (end - start), in whole seconds, rounded half-up to the cent."""
    total = int((end - start).total_seconds())
    remaining = max(0, int((end - moment).total_seconds()))
    return (2 * price_cents * remaining + total) // (2 * total)


LOCKED = "identity.locked_orgs"
# populate_existing: an Org loaded earlier in this transaction must be re-read under the lock,
# or its counters would be the stale ones read before another writer committed.
LOCK_ORG = (select(Org).where(Org.id == bindparam("org_id")).with_for_update(key_share=True)
            .execution_options(populate_existing=True))


# A check run once the org's lock is taken (by lock_org), set by the transaction's runner.
AFTER_ORG_LOCK = "identity.after_org_lock"


def lock_org(session: Session, org_id: str, *, or_deleted: bool = False) -> Org:
    """Return the org, locked for seat changes until the transaction ends.

    The first call in a transaction takes the lock and re-reads the row; later calls return the
    same object, whose counters only this transaction can change while it holds the lock.

    A deleted org is NotFound here, once for every change that takes this lock (a member, a seat,
    a charge, a setting, a group, a credential, SSO): deletion holds the lock while it ends
    everything, so a change that waited for it reads the row as deleted and is refused.
    `or_deleted` returns it all the same, to the renewal, which charges a deleted org nothing.
    """
    locked: dict[str, Org] = session.info.get(LOCKED, {})
    if org_id in locked:
        return locked[org_id]
    org: Org = _lock(session, org_id, LOCK_ORG, or_deleted=or_deleted)[0]
    return org


def lock_org_reading(session: Session, org_id: str, statement: Select[Any]) -> tuple[Org, Any]:
    """Lock the org as `lock_org` does, and read one more value in the same round trip.

    `statement` is LOCK_ORG with one column added (built once by the caller). It runs even when
    this transaction holds the lock already: the row it re-reads only this transaction can change.
    """
    row = _lock(session, org_id, statement)
    return row[0], row[1]


def _lock(session: Session, org_id: str, statement: Select[Any], *, or_deleted: bool = False) -> Sequence[Any]:
    row = session.execute(statement, {"org_id": org_id}).one_or_none()
    if row is None or (row[0].deleted_at is not None and not or_deleted):
        raise NotFound(f"no org {org_id!r}", org_id=org_id)
    locked = session.info.setdefault(LOCKED, {})
    first, locked[org_id] = org_id not in locked, row[0]
    after = session.info.get(AFTER_ORG_LOCK)
    if first and after is not None:  # identity.service.run: the caller's role read again under the lock
        after(session)
    return row


@event.listens_for(Session, "after_transaction_end")
def _forget_locks(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction: its locks are released
        session.info.pop(LOCKED, None)


ORGS = cast(Table, Org.__table__)
# Built once, bound per call: the org's seat position and the ledger are written as plain
# statements. Nothing reads them back, so the ORM's unit of work (a flush, its bookkeeping) would
# be pure cost on the provisioning path; the Org object is kept equal to its row by `_save_seats`.
SAVE_SEATS = update(ORGS).where(ORGS.c.id == bindparam("org_id")).values(
    seats_used=bindparam("new_seats_used"), purchased_seats=bindparam("new_purchased_seats"),
    cycle_start=bindparam("new_cycle_start"), cycle_end=bindparam("new_cycle_end"))
CHARGES = cast(Table, SeatCharge.__table__)
# Its values bound as `charge_<column>`, so that it can also run inside another statement (a WITH).
INSERT_CHARGE = insert(CHARGES).values(bound_columns(CHARGES, "charge_"))
SEAT_FIELDS = ("seats_used", "purchased_seats", "cycle_start", "cycle_end")
# A plain write, built once, and its parameters: what `take_seat` hands a caller that writes the
# seat inside a statement of its own (identity.users: a new member's rows) instead of running it.
Write = tuple[Any, dict[str, Any]]


def _write(session: Session, writes: list[Write] | None, statement: Any, params: dict[str, Any]) -> None:
    if writes is None:
        session.execute(statement, params)
    else:
        writes.append((statement, params))


def _set_seats(org: Org, **values: Any) -> None:
    """Change the org's seat position in memory only, with no ORM history: `_save_seats` writes it.

    A rollback of the transaction expires the Org as any other; a rollback to a savepoint would
    not (the ORM expires only what it flushed there), and no seat change runs inside one.
    """
    for field, value in values.items():
        set_committed_value(org, field, value)


def _save_seats(session: Session, org: Org, writes: list[Write] | None = None) -> None:
    """Write the org's seat position (the locked row holds no other writer's change to it)."""
    _write(session, writes, SAVE_SEATS,
           {"org_id": org.id, **{f"new_{field}": getattr(org, field) for field in SEAT_FIELDS}})


def _charge(session: Session, actor: Actor, org: Org, kind: ChargeKind, seats: int, amount: int,
            cycle: tuple[dt.datetime, dt.datetime], purchased_after: int, user: User | None,
            writes: list[Write] | None = None) -> SeatCharge:
    """Write a ledger row and its audit event, and set the org's purchased seats (saved by the caller)."""
    start, end = cycle
    values = {
        "id": str(uuid.uuid4()), "org_id": org.id, "kind": kind, "amount_cents": amount, "seats": seats,
        "unit_price_cents": org.seat_price_cents, "cycle_start": start, "cycle_end": end,
        "user_id": user.id if user else None, "actor_type": actor.type, "actor_id": actor.id,
        "created_at": clock.now(),
    }
    _write(session, writes, INSERT_CHARGE, {f"charge_{key}": value for key, value in values.items()})
    action = Action.SEAT_PURCHASED if kind == ChargeKind.SEAT_PURCHASE else Action.SEAT_RENEWED
    record(session, actor, action, Target("org", org.id, org.slug), {
        "charge_id": values["id"], "seats": seats, "amount_cents": amount, "unit_price_cents": org.seat_price_cents,
        "cycle_start": start.isoformat(), "cycle_end": end.isoformat(), "user_id": values["user_id"],
        "purchased_seats": {"before": org.purchased_seats, "after": purchased_after},
    }, org_id=org.id)
    _set_seats(org, purchased_seats=purchased_after)
    charge = SeatCharge(**values)
    make_transient_to_detached(charge)  # the row as written: readable, never inserted again
    return charge


def renew_if_due(session: Session, actor: Actor, org: Org) -> list[SeatCharge]:
    """Close every cycle that has ended (a missed month included), charge the next in full and grant its seat usage.

    The org must be locked. Purchased seats become max(0, used - included) at each boundary.
    Idempotent: a cycle that is already current is left alone. A deleted org is never charged again.
    """
    if org.deleted_at is not None:
        return []
    charges = []
    now = clock.now()
    while org.cycle_end <= now:
        start, end = org.cycle_end, add_months(org.created_at, months_between(org.created_at, org.cycle_end) + 1)
        seats = max(0, org.seats_used - org.included_seats)
        charges.append(_charge(session, actor, org, ChargeKind.SEAT_RENEWAL, seats, seats * org.seat_price_cents,
                               (start, end), seats, None))
        _set_seats(org, cycle_start=start, cycle_end=end)
    if charges:
        _save_seats(session, org)
        # DESIGN 3.8: the seats' included usage is credited at each cycle's start, every cycle charged (a missed
        # month's too), and here, where lazy renewals happen, not only when `identity billing renew` runs.
        wallets.grant_seat_usage(session, actor, org.id, [charge.cycle_start for charge in charges])
    return charges


def renew_org(session: Session, actor: Actor, org_id: str) -> list[SeatCharge]:
    """Lock the org and charge any renewal that is due (the `identity billing renew` service); a
    deleted org has none."""
    return renew_if_due(session, actor, lock_org(session, org_id, or_deleted=True))


def months_between(anchor: dt.datetime, boundary: dt.datetime) -> int:
    """Return how many whole months of the calendar lie from `anchor` to `boundary`."""
    return (boundary.year - anchor.year) * 12 + boundary.month - anchor.month


def take_seat(session: Session, actor: Actor, user: User, *, writes: list[Write] | None = None) -> SeatCharge | None:
    """Give `user` a seat, buying one (prorated) when capacity is full; return the charge if any.

    Raises SeatCapReached, changing nothing, when the org's `max_seats` is reached. With `writes`,
    the ledger row and the org's seat position are appended to it, in order, for the caller to
    write in this transaction (a renewal that falls due here is written at once).
    """
    org = lock_org(session, user.org_id)
    renew_if_due(session, actor, org)
    if user.has_seat:
        return None
    if org.max_seats is not None and org.seats_used + 1 > org.max_seats:
        raise SeatCapReached(
            f"seat limit reached: {org.seats_used} of {org.max_seats} seats are in use",
            org_id=org.id, max_seats=org.max_seats, user_name=user.user_name,
            user_id=user.id if inspect(user).has_identity else None,  # None: a member not made yet
        )
    charge = None
    if org.seats_used + 1 > org.included_seats + org.purchased_seats:
        now = clock.now()
        amount = prorated_cents(org.seat_price_cents, org.cycle_start, org.cycle_end, now)
        charge = _charge(session, actor, org, ChargeKind.SEAT_PURCHASE, 1, amount, (org.cycle_start, org.cycle_end),
                         org.purchased_seats + 1, user, writes)
    _set_seats(org, seats_used=org.seats_used + 1)
    _save_seats(session, org, writes)
    user.has_seat = True
    record(session, actor, Action.SEAT_ASSIGNED, Target("user", user.id, user.user_name),
           {"seats_used": {"before": org.seats_used - 1, "after": org.seats_used}}, org_id=org.id)
    return charge


def free_seat(session: Session, actor: Actor, user: User) -> None:
    """Free `user`'s seat at once; a purchased seat stays paid to the cycle end and is reused."""
    if release_seat(session, actor, user):
        user.has_seat = False


def release_seat(session: Session, actor: Actor, user: User) -> bool:
    """Free `user`'s seat as free_seat does, but leave `user.has_seat` to the caller (which writes
    the user's row itself); tell whether it had one."""
    org = lock_org(session, user.org_id)
    renew_if_due(session, actor, org)
    if not user.has_seat:
        return False
    _set_seats(org, seats_used=org.seats_used - 1)
    _save_seats(session, org)
    record(session, actor, Action.SEAT_RELEASED, Target("user", user.id, user.user_name),
           {"seats_used": {"before": org.seats_used + 1, "after": org.seats_used}}, org_id=org.id)
    return True


@dataclass(frozen=True)
class SeatPreview:
    """What the invite dialog and the admin API show before a member is added."""

    included: int
    purchased: int
    used: int
    free: int
    max_seats: int | None
    next_seat_cents: int
    seat_price_cents: int
    cycle_start: dt.datetime
    cycle_end: dt.datetime
    # Seats that pending invitations will take once accepted, and what is free after them.
    pending_invitations: int = 0
    free_after_invitations: int = 0
    next_invitation_cents: int = 0  # what one more invitation will cost when accepted
    # Members the seat cap (`max_seats`) still lets in once the pending invitations are accepted
    # (None: no cap). At 0, accepting one more invitation is refused (SeatCapReached in take_seat).
    cap_left: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "included": self.included, "purchased": self.purchased, "used": self.used, "free": self.free,
            "max_seats": self.max_seats, "next_seat_cents": self.next_seat_cents,
            "seat_price_cents": self.seat_price_cents,
            "cycle_start": self.cycle_start.isoformat(), "cycle_end": self.cycle_end.isoformat(),
            "pending_invitations": self.pending_invitations, "free_after_invitations": self.free_after_invitations,
            "next_invitation_cents": self.next_invitation_cents, "cap_left": self.cap_left,
        }


def preview(org: Org, *, pending_invitations: int = 0) -> SeatPreview:
    """Return the seat position now, as it will be once any due renewal has run, counting the seats
    that `pending_invitations` will take. Reads only."""
    now = clock.now()
    start, end, purchased = org.cycle_start, org.cycle_end, org.purchased_seats
    if end <= now:
        start, end = cycle_at(org.created_at, now)
        purchased = max(0, org.seats_used - org.included_seats)
    free = max(0, org.included_seats + purchased - org.seats_used)
    cost = 0 if free else prorated_cents(org.seat_price_cents, start, end, now)
    after = max(0, free - pending_invitations)
    invitation_cost = 0 if after else prorated_cents(org.seat_price_cents, start, end, now)
    cap_left = None if org.max_seats is None else max(0, org.max_seats - org.seats_used - pending_invitations)
    return SeatPreview(org.included_seats, purchased, org.seats_used, free, org.max_seats, cost,
                       org.seat_price_cents, start, end, pending_invitations, after, invitation_cost, cap_left)
