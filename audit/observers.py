"""Who is told about audit events once they are committed: the operators' counters (/metrics).

The audit log announces each committed transaction's events here, after COMMIT (a rolled-back
event is never announced). The web shell subscribes (identity.web.metrics) and counts them, so that
neither the domain nor this package knows of Prometheus, and what an operator counts is what the
log holds. An observer must be quick and must not raise; one that does is logged and skipped:
counting never fails a change that is already committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger("audit.observers")

Observer = Callable[[Sequence[Mapping[str, Any]]], None]
_observers: list[Observer] = []


def subscribe(observer: Observer) -> None:
    """Call `observer` with the events of every committed transaction (once, however often subscribed)."""
    if observer not in _observers:
        _observers.append(observer)


def unsubscribe(observer: Observer) -> None:
    """Stop calling `observer`."""
    if observer in _observers:
        _observers.remove(observer)


def announce(events: Sequence[Mapping[str, Any]]) -> None:
    """Tell every observer about `events` (each: action, outcome, changes...), just committed."""
    for observer in list(_observers):
        try:
            observer(events)
        except Exception:  # counting must never fail a committed change
            log.exception("an audit observer failed")
