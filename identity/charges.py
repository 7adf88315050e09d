"""The seat ledger (DESIGN.md 3.4) as the billing page and the admin API read it: a page of charges,
newest first, with the current cycle's totals. Reads only, each authorizing its actor."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from audit import Actor
from identity import invitations, seats
from identity.models import Org, SeatCharge
from identity.paging import Position, Window, split, within
from identity.roles import authorize


@dataclass(frozen=True)
class ChargeEntry:
    """A row of the seat ledger as the billing page shows it: what was charged, for what, by whom."""

    id: str
    kind: str
    amount_cents: int
    seats: int
    unit_price_cents: int
    user_id: str | None
    actor_type: str
    actor_id: str
    cycle_start: dt.datetime
    cycle_end: dt.datetime
    created: dt.datetime


@dataclass(frozen=True)
class ChargePage:
    """A page of charges, newest first; `next` is where the following page starts (None: the last page)."""

    charges: list[ChargeEntry]
    next: Position | None
    cycle: dict[str, Any]


def seat_charges(session: Session, actor: Actor, org_id: str, *, limit: int,
                 after: Position | None = None) -> ChargePage:
    """Return a page of the seat ledger (newest first) and the current cycle's totals."""
    authorize(actor, "billing.read", org_id=org_id)
    c, window = SeatCharge, Window(limit, after)
    rows = session.scalars(within(select(c).where(c.org_id == org_id), c.created_at, c.id, window, newest_first=True))
    found = [ChargeEntry(r.id, r.kind, r.amount_cents, r.seats, r.unit_price_cents, r.user_id, r.actor_type,
                         r.actor_id, r.cycle_start, r.cycle_end, r.created_at) for r in rows]
    page, following = split(found, window, lambda charge: Position(charge.created, charge.id))
    return ChargePage(page, following, _cycle_totals(session, org_id))


def _cycle_totals(session: Session, org_id: str) -> dict[str, Any]:
    """The current cycle (as the seat preview reckons it, pending invitations counted as the seats they
    will take, as identity.directory.seat_preview does) and what the ledger charged in it."""
    pending = invitations.pending_count(session, org_id)
    position = seats.preview(session.get_one(Org, org_id), pending_invitations=pending)
    c = SeatCharge
    count, seats_charged, amount = session.execute(select(func.count(), func.coalesce(func.sum(c.seats), 0),
                                                          func.coalesce(func.sum(c.amount_cents), 0)).where(
        c.org_id == org_id, c.cycle_start == position.cycle_start)).one()
    # int(): PostgreSQL sums a BIGINT as NUMERIC (a Decimal here); cents are whole.
    return {"cycle_start": position.cycle_start, "cycle_end": position.cycle_end, "charges": int(count),
            "seats_charged": int(seats_charged), "amount_cents": int(amount), "seats": position.as_dict()}
