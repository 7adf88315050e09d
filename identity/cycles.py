"""The monthly billing cycle, anchored at the org's creation (DESIGN.md 3.4): seats and wallets both keep it.

Apart from identity.seats so that identity.wallets reads cycles without importing seats, which
grants the wallets' seat usage at each renewal.
"""

from __future__ import annotations

import calendar
import datetime as dt


def add_months(anchor: dt.datetime, months: int) -> dt.datetime:
    """Return `anchor` moved by whole months; a day past the month's end falls on its last day."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def cycle_at(anchor: dt.datetime, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the monthly billing cycle [start, end) anchored at `anchor` that contains `moment`."""
    months = (moment.year - anchor.year) * 12 + moment.month - anchor.month
    while add_months(anchor, months) > moment:
        months -= 1
    while add_months(anchor, months + 1) <= moment:
        months += 1
    return add_months(anchor, months), add_months(anchor, months + 1)
