"""Cursor paging for lists ordered by (created time, id): the cursor is opaque to clients.

A page answers `next`, to be sent back as `?after=`; null at the end. The cursor carries the
last row's time and id, so a page stays right when rows before it are added or deleted.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from flask import request

from identity.errors import InvalidValue
from identity.web.api.common import int_arg

MAX_LIMIT = 500


def limit_arg(default: int = 100) -> int:
    """Return `?limit=`, clamped to 1..MAX_LIMIT."""
    return min(max(int_arg("limit", default), 1), MAX_LIMIT)


def encode(place: tuple[dt.datetime, str] | None) -> str | None:
    """Return the cursor of a (created, id) place, or None at the end of the list."""
    if place is None:
        return None
    return base64.urlsafe_b64encode(f"{place[0].isoformat()}|{place[1]}".encode()).decode().rstrip("=")


def time_id_after() -> tuple[dt.datetime, str] | None:
    """Return the (created, id) place of `?after=` (a `next` of the previous page), or None."""
    values = request.args.getlist("after")
    if not values or values == [""]:
        return None
    try:
        if len(values) > 1:
            raise ValueError("repeated")
        text = base64.urlsafe_b64decode(values[0] + "=" * (-len(values[0]) % 4)).decode()
        moment, _, row_id = text.partition("|")
        created = dt.datetime.fromisoformat(moment)
        if created.tzinfo is None or not row_id or len(row_id) > 80 or "\x00" in row_id:
            raise ValueError("not a cursor")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidValue("after must be the `next` of the previous page", field="after") from None
    return created, row_id
