"""A team wallet's billing period and the refusal in force (DESIGN.md 3.8): what the key check, the
usage debits, the spend views and the wallet's controls each read the same way.

The period is the org's monthly billing cycle (identity.cycles); a spending limit's refusal lasts
to the end of its period, a balance's until a credit lands; what a key may still spend is the
balance bounded by every limit that applies.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from identity.cycles import cycle_at

BALANCE_EXHAUSTED, SPENDING_LIMIT_REACHED = "balance_exhausted", "spending_limit_reached"


def period_at(org_created: dt.datetime, moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """Return the billing period [start, end) containing `moment`: the org's monthly billing cycle.

    The key check asks on every request; the last period found per org is kept (this process),
    and given back while `moment` falls inside it."""
    known = _PERIODS.get(org_created)
    if known is not None and known[0] <= moment < known[1]:
        return known
    if len(_PERIODS) >= _PERIODS_KEPT:
        _PERIODS.clear()
    found = _PERIODS[org_created] = cycle_at(org_created, moment)
    return found


_PERIODS: dict[dt.datetime, tuple[dt.datetime, dt.datetime]] = {}
_PERIODS_KEPT = 100_000  # orgs; cleared whole when full


def live_refusal(refusal: str | None, refused_period: dt.datetime | None, period_start: dt.datetime) -> str | None:
    """Return the refusal still in force: a limit's lasts to the end of its period, a balance's until a credit."""
    if refusal == BALANCE_EXHAUSTED or (refusal is not None and refused_period == period_start):
        return refusal
    return None


def refusal_in_force(start: dt.datetime, team: tuple[str | None, dt.datetime | None] | None,
                     limits: Iterable[tuple[str, dt.datetime, dt.datetime | None]]) -> tuple[str, str] | None:
    """Return the refusal in force on a key, with its scope (`team`, `key` or `member`), or None.

    `team` is the key's team wallet's refusal and the period it was refused in (None: no wallet yet);
    `limits` the key's limits that exist, as `(scope, period, refused period)`, the key's before its
    member's. The wallet's refusal comes first (live_refusal), then the first limit reached in the
    period that begins at `start`. What the key check answers (identity.gateway) and what the keys
    page shows (identity.spend.key_states) are this one reading."""
    if team is not None:
        code = live_refusal(team[0], team[1], start)
        if code is not None:
            return code, "team"
    for scope, period, refused in limits:
        if period == start and refused == start:
            return SPENDING_LIMIT_REACHED, scope
    return None


def remaining(balance_micros: int, limits: Iterable[tuple[int, int]]) -> int:
    """Return what a key may still spend: the balance, bounded by each limit that applies (team, key,
    member; as `(limit, spend this period)`) less its spend.

    The one computation of it: the key check's `budget.remaining_micros` (identity.gateway) and the
    usage answer's `remaining_micros` (identity.usage) must say the same (DESIGN 3.8)."""
    return max(0, min([balance_micros, *(limit - spent for limit, spent in limits)]))
