"""Reading a list's query string in the admin API: single-valued parameters (a repeat refused, never
reduced to its first value), the page size (`limit`, refused outside its range, never clamped), the
opaque `next` cursors of lists in (created, id) order and the ids of lists in id order, and the one
answer of a list route (`list_page`). identity.web.api.common re-exports every name here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

from flask import Response, jsonify, request
from sqlalchemy.orm import Session

from identity import jsontext
from identity.errors import InvalidValue
from identity.paging import Position, Window, split
from identity.web.context import database

T = TypeVar("T")
ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@overload
def one_arg(name: str) -> str | None: ...
@overload
def one_arg(name: str, default: str) -> str: ...
def one_arg(name: str, default: str | None = None) -> str | None:
    """Return the single-valued query parameter `name` as given (else `default`): a repeat is refused
    naming it, never reduced to its first value (a second `since` or `status` must not go unread)."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise InvalidValue(f"{name} may be given only once", field=name)
    return values[0] if values else default


def int_arg(name: str, default: int) -> int:
    """Return the integer query parameter `name` (else `default`); text or a repeated value is refused."""
    value = one_arg(name)
    if value is None:
        return default
    if not re.fullmatch(r"-?[0-9]{1,18}", value):
        raise InvalidValue(f"{name} must be one integer", field=name)
    return int(value)


def after_id() -> str:
    """Return the `after` cursor of a keyset page: a row id (`next` of the previous page), or ""."""
    value = one_arg("after", "")
    if not (value == "" or ID.fullmatch(value)):
        raise InvalidValue("after must be the `next` of the previous page", field="after")
    return value


PAGE_SIZE, MAX_PAGE_SIZE = 100, 500
# Every list's `limit` in the OpenAPI document (page_limit reads it): one range, refused outside it.
LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE}
LIMIT_QUERY = ("limit", LIMIT_SCHEMA, f"page size, 1 to {MAX_PAGE_SIZE} (default {PAGE_SIZE}; others are refused)")
# A row id in a cursor: a uuid, or a team's slug-and-suffix id.
ROW_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def page_limit() -> int:
    """Return `?limit=`: 1 to 500, default 100. One out of range is refused naming `limit`, never clamped
    (README: query strings are never coerced): a page of 500 when 1000 was asked for would read as the
    whole list to a client that stops at a short page. Every list but the audit log's reads it here."""
    limit = int_arg("limit", PAGE_SIZE)
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidValue(f"limit must be 1 to {MAX_PAGE_SIZE}", field="limit")
    return limit


def page_window() -> Window:
    """Read a page of a list in (created, id) order: `limit` and `after` (`next` of the previous page)."""
    return Window(page_limit(), after_position())


def after_position() -> Position | None:
    """Read `?after=` (the `next` of the previous page) alone: a page whose size is not the caller's (the console's)."""
    return position_of(one_arg("after", ""))


def position_of(value: str, name: str = "after") -> Position | None:
    """Read a `cursor` back into its position ("": none), or raise InvalidValue naming field `name`."""
    if not value:
        return None
    refused = InvalidValue(f"{name} must be the `next` of the previous page", field=name)
    try:
        found = jsontext.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        moment, row_id = found if isinstance(found, list) and len(found) == 2 else (None, None)
        at = dt.datetime.fromisoformat(moment) if isinstance(moment, str) else None
        if at is not None and at.tzinfo is not None:
            at = at.astimezone(dt.UTC)  # OverflowError for a time before or after the calendar in UTC
    except (ValueError, OverflowError, binascii.Error):
        raise refused from None
    if at is None or at.tzinfo is None or not isinstance(row_id, str) or not ROW_ID.fullmatch(row_id):
        raise refused
    return Position(at, row_id)


def cursor(position: Position | None) -> str | None:
    """Return the opaque `next` cursor of a position (None: the list has ended)."""
    if position is None:
        return None
    raw = json.dumps([position.moment.isoformat(), position.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def paged(found: list[T], window: Window, position: Callable[[T], Position]) -> tuple[list[T], str | None]:
    """Return a page's rows (read with one more than its limit) and the `next` cursor of the following page."""
    page, after = split(found, window, position)
    return page, cursor(after)


def list_page(name: str, read: Callable[[Session, Window], list[T]], render: Callable[[T], dict[str, Any]],
              position: Callable[[T], Position]) -> Response:
    """Answer a list route in (created, id) order: `{name: [...], "next": cursor}`.

    (Query parameters other than the operation's are refused before it: `declared_query`.) `read(session, window)` reads
    the page (one more row than its limit when there are more) in one read transaction. A bad
    `limit` or `after` is refused after what `read` itself refuses (a team of another org: 404).
    """
    try:
        window = page_window()
    except InvalidValue:  # the read's own refusals first: another org's team is 404 whatever the cursor
        with database().reading() as session:
            read(session, Window(1))
        raise
    with database().reading() as session:
        found, after = paged(read(session, window), window, position)
    return jsonify({name: [render(item) for item in found], "next": after})
