"""Reading JSON as RFC 8259 defines it, within bounds every protocol here can keep.

Python's reader also takes NaN, Infinity and -Infinity (and reads 1e999 as infinity), which no
database's JSON type stores and no IdP's parser reads back; and it follows nesting until the
interpreter's recursion limit, where it raises RecursionError (a 500, not a client's error).
Every request body of every protocol is read here, so none of them reaches the database: what
is refused raises ValueError, which each protocol turns into its own 400.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Arrays and objects inside one another, the outermost counting as 1. A SCIM Bulk request that
# patches a group's members nests 6 deep; everything stored is built from bodies within this
# bound (a PATCH value sits deeper in its body than in the resource), so a resource read back
# can always be sent again.
MAX_DEPTH = 32


# Characters no database here stores, refused wherever text comes in (bodies, paths, queries,
# forms, filters): NUL (PostgreSQL text cannot hold it) and an unpaired UTF-16 surrogate ("\ud800"
# is valid JSON text but not Unicode text: neither psycopg nor sqlite3 can encode it).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable(value: Any) -> bool:
    """Tell whether a string anywhere in `value` (JSON data, object keys included) holds an UNSTORABLE character."""
    return unstorable_at(value) is not None


def unstorable_at(value: Any) -> str | None:
    """Where in `value` (JSON data) the first string with an UNSTORABLE character is, as a field name
    (`model`, `usage[3].request_id`; `""` for `value` itself), or None when there is none."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        where, item = pending.pop()
        if type(item) is str:
            if UNSTORABLE.search(item):
                return where
        elif type(item) is dict:
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if UNSTORABLE.search(key):
                    return name
                pending.append((name, child))
        elif type(item) is list:
            pending.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


class TooDeep(ValueError):
    """The JSON text nests arrays and objects deeper than MAX_DEPTH."""

    def __init__(self) -> None:
        super().__init__(f"arrays and objects are nested deeper than {MAX_DEPTH}")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def too_deep(value: Any) -> bool:
    """Tell whether arrays and objects nest in `value` deeper than MAX_DEPTH (walked level by level,
    without recursion: 4 ms for a 1 MiB group PATCH, a few microseconds for a user)."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        deeper = []
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    deeper.append(child)
        level = deeper
    return False


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raise ValueError for what is not JSON, NaN and infinite numbers, and TooDeep."""
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        raise TooDeep() from None
    if isinstance(value, (dict, list)) and too_deep(value):
        raise TooDeep()
    return value

