"""Reading JSON as RFC 8259 defines it: Python's reader also takes NaN, Infinity and -Infinity
(and reads 1e999 as infinity), which no database's JSON type stores and no IdP's parser reads back.
Every request body of every protocol is read here, so none of them reaches the database.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text[:40]} is out of range")
    return number


def loads(text: str | bytes) -> Any:
    """Parse JSON text; raise ValueError for what is not JSON, NaN and infinite numbers included."""
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `loads` above: `request.get_json()` refuses what it refuses."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
