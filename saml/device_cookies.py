"""The device cookie (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): proof that this
browser has signed in as an address before, so that its asks for a sign-in link by email are counted
in a bucket of its own (saml.links) and a stranger's, from however many client addresses, cannot fill it.

The cookie names no address: it holds an expiry, a random device id and, for each address of the
member who signed in, an HMAC under SECRET_KEY of the three. Whoever asks for a link types the
address; the MAC of that address is looked for, under SECRET_KEY then SECRET_KEY_PREVIOUS (a rotation
does not make every browser a stranger). A forged, expired or other address's cookie proves nothing.

Its lifetime, LIFETIME, 90 days from the last sign-in in this browser (by link or SAML: each sets it
anew): an owner's break-glass sign-in may come months after her last, and the cookie grants no access
(the link still goes to her mailbox), only a share of asks that strangers cannot use up; a browser
left unused for a quarter (given away, shared) stops being trusted, and browsers cap cookies at 400 days.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from identity.names import name_key

COOKIE = "identity_device"
LIFETIME = dt.timedelta(days=90)
_VERSION = "v1"
_DOMAIN = b"identity.device-cookie\x00"
_MAX_EXPIRY_DIGITS = 12  # a Unix time in seconds; more is malformed, not a far future
MAX_ADDRESSES = 4  # a member's userName and email, with room; bounds a cookie's size and its checking


@dataclass(frozen=True)
class Presented:
    """The device cookie a request came with, and the keys that may have signed it (newest first)."""

    value: str | None
    secret_keys: tuple[str, ...]

    def device_for(self, address: str, now: dt.datetime) -> str | None:
        return device_of(self.secret_keys, self.value, address, now)


NONE = Presented(None, ())


def _mac(secret_key: str, expires: int, device: str, address_key: str) -> str:
    """The HMAC of an address's key (identity.names.name_key: addresses compare as the sign-in asks do)."""
    message = _DOMAIN + f"{expires}\x00{device}\x00{address_key}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret_key: str, addresses: Iterable[str], now: dt.datetime) -> str:
    """A new device cookie's value for the member's `addresses`, valid LIFETIME from `now`."""
    keys = list(dict.fromkeys(name_key(address.strip()) for address in addresses))[:MAX_ADDRESSES]
    expires, device = int((now + LIFETIME).timestamp()), secrets.token_urlsafe(12)
    return ".".join([_VERSION, str(expires), device, *(_mac(secret_key, expires, device, key) for key in keys)])


def device_of(secret_keys: Sequence[str], value: str | None, address: str, now: dt.datetime) -> str | None:
    """The device id of a cookie valid for `address` at `now` under one of `secret_keys`, else None."""
    parts = (value or "").split(".")
    if not 4 <= len(parts) <= 3 + MAX_ADDRESSES or parts[0] != _VERSION or not all(parts):
        return None
    if not (parts[1].isascii() and parts[1].isdigit() and len(parts[1]) <= _MAX_EXPIRY_DIGITS):
        return None  # str.isdigit alone is true of '²', which int() refuses: malformed, no cookie
    expires, device, macs = int(parts[1]), parts[2], parts[3:]
    if expires <= now.timestamp():
        return None
    address_key = name_key(address.strip())
    for secret_key in secret_keys:
        expected = _mac(secret_key, expires, device, address_key)
        if any(hmac.compare_digest(expected, mac) for mac in macs):
            return device
    return None
