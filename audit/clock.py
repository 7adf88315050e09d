"""The one source of "now" for the domain, so that tests can hold time still."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

_frozen: list[dt.datetime] = []


def now() -> dt.datetime:
    """Return the current UTC time (timezone-aware), or the time a test has set."""
    if _frozen:
        return _frozen[-1]
    return dt.datetime.now(dt.UTC)


@contextmanager
def frozen_at(moment: dt.datetime) -> Iterator[None]:
    """Hold the clock at `moment` (aware UTC) while the block runs; tests only."""
    if moment.tzinfo is None:
        raise ValueError("use a timezone-aware datetime")
    _frozen.append(moment)
    try:
        yield
    finally:
        _frozen.pop()
