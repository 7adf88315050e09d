"""The filters that select audit events (docs/audit.md section 5), read one way for every reader.

The admin API, the console's page and its downloads, and `identity audit export` each turn their
input into plain text and hand it here, so that the same filters select the same events whichever
way they came in: `action` is a list, each value split on commas; times are ISO 8601. An `action`
may also be one of ACTION_ALIASES, a name DESIGN.md uses for events recorded under other actions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from audit import events
from identity.actions import Action
from identity.errors import InvalidValue

FILTERS = ("since", "until", "action", "actor", "actor_type", "target", "target_type", "outcome")
# A filter's name -> the actions it selects. DESIGN.md 6 names a seat charge `seat.charged`; a charge
# is recorded as what it is, a prorated purchase or a cycle's renewal (docs/audit.md section 5).
ACTION_ALIASES: dict[str, tuple[str, ...]] = {"seat.charged": (Action.SEAT_PURCHASED, Action.SEAT_RENEWED)}


def filters_from(one: Callable[[str], str | None], actions: Iterable[str]) -> dict[str, Any]:
    """Return the filters given: each of FILTERS but `action` as `one` reads it (an empty one left
    out), and `action` as the list of every action in `actions`, each value split on commas."""
    found: dict[str, Any] = {name: value for name in FILTERS if name != "action" and (value := one(name))}
    wanted = [action.strip() for value in actions for action in value.split(",") if action.strip()]
    if wanted:
        found["action"] = wanted
    return found


def selection_of(org_id: str, filters: dict[str, Any], after_seq: int = 0) -> events.Selection:
    """Return the selection of events that `filters` ask for, or raise InvalidValue naming the bad field."""
    since, until = _time_filter(filters, "since"), _time_filter(filters, "until")
    actions = tuple(dict.fromkeys(name for action in filters.get("action", ())
                                  for name in ACTION_ALIASES.get(action, (action,))))
    return events.Selection(org_id, since=since, until=until, actions=actions,
                            actor_id=filters.get("actor"), actor_type=filters.get("actor_type"),
                            target_id=filters.get("target"), target_type=filters.get("target_type"),
                            outcome=filters.get("outcome"), after_seq=after_seq)


def _time_filter(filters: dict[str, Any], name: str) -> dt.datetime | None:
    """The filter `name` (since, until) as a time, or InvalidValue naming that field."""
    try:
        return events.parse_time(filters[name]) if filters.get(name) else None
    except ValueError as error:
        raise InvalidValue(f"{name} must be an ISO 8601 time", field=name) from error
