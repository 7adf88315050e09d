"""Keyset pages of a list in its own order: by creation time, then id (oldest or newest first).

A page is read as "the rows after this position", never as an offset, so a page stays right
while rows are added or removed before it, and each page is one indexed range read. The caller
asks for `limit` rows and is given one more when there is more (`split` takes it off and
returns the position to continue after).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, TypeVarTuple

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

T = TypeVar("T")
S = TypeVar("S")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class Position:
    """Where a page ended: the last row's creation time and id."""

    moment: dt.datetime
    id: str


@dataclass(frozen=True)
class Window:
    """Which page to read: up to `limit` rows after `after` (None: from the start)."""

    limit: int
    after: Position | None = None


def within(stmt: Select[S], moment: InstrumentedAttribute[dt.datetime], ident: InstrumentedAttribute[str],
           window: Window | None, *, newest_first: bool = False) -> Select[S]:
    """Order `stmt` by (moment, id) and keep the window's rows, one more than its limit (None: every row)."""
    stmt = stmt.order_by(*((moment.desc(), ident.desc()) if newest_first else (moment, ident)))
    if window is None:
        return stmt
    if window.after is not None:
        at = window.after
        stmt = stmt.where(or_(moment < at.moment, and_(moment == at.moment, ident < at.id)) if newest_first else
                          or_(moment > at.moment, and_(moment == at.moment, ident > at.id)))
    return stmt.limit(window.limit + 1)


def split(found: list[T], window: Window, position: Callable[[T], Position]) -> tuple[list[T], Position | None]:
    """Return the page's rows and where the next page starts (None when this one is the last)."""
    if len(found) <= window.limit:
        return found, None
    page = found[:window.limit]
    return page, position(page[-1])


def by_id(stmt: Select[*Ts], ident: InstrumentedAttribute[str], *, limit: int, after: str = "",
          before: str = "") -> Select[*Ts]:
    """Keep the page of `stmt` in id order after the id `after`, or (for a page back) the one ending
    before the id `before`; with one row more, to tell whether a page follows it (or precedes it)."""
    if before:
        return stmt.where(ident < before).order_by(ident.desc()).limit(limit + 1)
    return stmt.where(ident > after).order_by(ident).limit(limit + 1)


def split_by_id(found: list[T], ident_of: Callable[[T], str], *, limit: int, after: str = "",
                before: str = "") -> tuple[list[T], str | None, str | None]:
    """Return the rows `by_id` read as a page in id order, the cursor of the next page (None on the
    last page) and of the previous one (None on the first page)."""
    if before:
        page = found[:limit][::-1]
        return page, ident_of(page[-1]) if page else None, ident_of(page[0]) if len(found) > limit else None
    page = found[:limit]
    following = ident_of(page[-1]) if len(found) > limit else None
    return page, following, ident_of(page[0]) if after and page else None
