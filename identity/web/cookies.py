"""The wire format of the sign-in session cookie: the session's token, signed with SECRET_KEY.

The session's rules (lifetimes, ending, the stored hash) are the domain's (identity.sessions);
this is only how its token travels in a browser cookie.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from identity.sessions import Lifetime

COOKIE = "identity_session"
SALT = "identity.sso-session"


def cookie_value(secret_key: str, token: str) -> str:
    """Return the signed cookie value carrying `token`."""
    return URLSafeSerializer(secret_key, salt=SALT).dumps(token)


def token_of(secret_key: str, cookie: str | None) -> str | None:
    """Return the token in a signed cookie value, or None when absent or tampered with."""
    if not cookie:
        return None
    try:
        token = URLSafeSerializer(secret_key, salt=SALT).loads(cookie)
    except BadSignature:
        return None
    return token if isinstance(token, str) else None


def lifetime(config: Mapping[str, Any]) -> Lifetime:
    """Return the sessions' lifetime the app is configured with (SESSION_IDLE_MINUTES, SESSION_ABSOLUTE_HOURS)."""
    return Lifetime(idle=dt.timedelta(minutes=int(config.get("SESSION_IDLE_MINUTES", 60))),
                    absolute=dt.timedelta(hours=int(config.get("SESSION_ABSOLUTE_HOURS", 12))))
