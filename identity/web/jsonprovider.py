"""Flask's JSON reading, held to the domain's reader (identity.jsontext)."""

from __future__ import annotations

from typing import Any

from flask.json.provider import DefaultJSONProvider

from identity import jsontext


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with `jsontext.loads`: `request.get_json()` refuses what it refuses."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return jsontext.loads(s)
