"""The filters that select audit events (docs/audit.md section 5), read one way for every reader.

The admin API, the console's page and its downloads, and `identity audit export` each turn their
input into plain text and hand it here, so that the same filters select the same events whichever
way they came in: `action` is a list, each value split on commas; times are ISO 8601. An `action`
may also be one of ACTION_ALIASES, a name DESIGN.md uses for events recorded under other actions.
`actor` is an id, or the address (userName or email) of a live member, which every row shows as
its actor: read as that member's id here, so that each reader finds the same events by it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session

from audit import events
from identity import lookups
from identity.actions import Action
from identity.errors import Conflict, InvalidValue

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


def selection_of(session: Session, org_id: str, filters: dict[str, Any], after_seq: int = 0,
                 upto_seq: int | None = None) -> events.Selection:
    """Return the selection of events that `filters` ask for (after `after_seq`, up to `upto_seq`: a
    position, no filter), or raise InvalidValue naming the bad field.

    `session` reads the member an `actor` address names (see _actor_id)."""
    since, until = _time_filter(filters, "since"), _time_filter(filters, "until")
    actions = tuple(dict.fromkeys(name for action in filters.get("action", ())
                                  for name in ACTION_ALIASES.get(action, (action,))))
    actor = _actor_id(session, org_id, filters["actor"]) if filters.get("actor") else None
    return events.Selection(org_id, since=since, until=until, actions=actions,
                            actor_id=actor, actor_type=filters.get("actor_type"),
                            target_id=filters.get("target"), target_type=filters.get("target_type"),
                            outcome=filters.get("outcome"), after_seq=after_seq, upto_seq=upto_seq)


def _time_filter(filters: dict[str, Any], name: str) -> dt.datetime | None:
    """The filter `name` (since, until) as a time, or InvalidValue naming that field."""
    try:
        return events.parse_time(filters[name]) if filters.get(name) else None
    except ValueError as error:
        raise InvalidValue(f"{name} must be an ISO 8601 time", field=name) from error


def _actor_id(session: Session, org_id: str, actor: str) -> str:
    """The id of the live member whose userName or email `actor` is, else `actor` itself as an id.

    Rows show a member by address, ids are not shown but in links: an address is what a person
    types. One no member has stays as given, and so selects nothing (an id never holds an address);
    an email two members share names neither, which the field says."""
    try:
        member = lookups.find_by_address(session, org_id, actor)
    except Conflict as error:
        raise InvalidValue(error.message, field="actor") from error
    return member.id if member else actor.strip()
