"""The device cookie (OWASP, "Slow Down Online Guessing Attacks with Device Cookies"): proof that this
browser has signed in as a member before, so that its asks for that member's sign-in link by email are
counted in a bucket of its own (saml.links) and a stranger's, from however many client addresses,
cannot fill it.

It proves a member (an org and a user in it), not an address: an org's IdP may sign anyone in with
any NameID, and JIT makes that a member of its own org with that address; a cookie for the address
would let that org's owner ask for the victim's links in another org, past the address's all-clients
ceiling, one new device per sign-in. So the cookie counts only for the members it was issued for: an
ask that would mail one of them is counted in the device's bucket and mails only those it names; the
address's other members (another org's JIT member) get no mail by that ask (saml.links._ask), and so
cannot make the member's own browser anonymous.

The cookie names no address and no id: it holds an expiry, a random device id and, for each member it
was issued for (at most MAX_MEMBERS: bounds its size and the work of checking it), an HMAC under
SECRET_KEY of the three. The ask supplies the members it would mail; their MACs are looked for, under
SECRET_KEY then SECRET_KEY_PREVIOUS (a rotation does not make every browser a stranger). A forged,
expired, malformed or other member's cookie proves nothing.

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

COOKIE = "identity_device"
LIFETIME = dt.timedelta(days=90)
_VERSION = "v2"  # v1 MACed addresses: such a cookie proves nothing now (its browser is a stranger till it signs in)
_DOMAIN = b"identity.device-cookie.member\x00"
MAX_MEMBERS = 4  # members one cookie may name: bounds its size and the MACs computed to check it
_MAX_EXPIRY_DIGITS = 12  # a Unix time in seconds; more is malformed, not a far future
_MAX_LENGTH = 512  # longer than any cookie issue() makes: not split, not read


@dataclass(frozen=True)
class Member:
    """A member a cookie is issued for: the org and the user in it (ids, never shown in the cookie)."""

    org_id: str
    user_id: str


@dataclass(frozen=True)
class Presented:
    """The device cookie a request came with, and the keys that may have signed it (newest first)."""

    value: str | None
    secret_keys: tuple[str, ...]

    def device_for(self, members: Sequence[Member], now: dt.datetime) -> str | None:
        return device_of(self.secret_keys, self.value, members, now)


NONE = Presented(None, ())


def _mac(secret_key: str, expires: int, device: str, member: Member) -> str:
    """The HMAC of a member's org and user ids, with the cookie's expiry and device id."""
    message = _DOMAIN + f"{expires}\x00{device}\x00{member.org_id}\x00{member.user_id}".encode()
    digest = hmac.new(secret_key.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(secret_key: str, members: Iterable[Member], now: dt.datetime) -> str:
    """A new device cookie's value for `members` (the first MAX_MEMBERS), valid LIFETIME from `now`."""
    named = list(dict.fromkeys(members))[:MAX_MEMBERS]
    expires, device = int((now + LIFETIME).timestamp()), secrets.token_urlsafe(12)
    return ".".join([_VERSION, str(expires), device, *(_mac(secret_key, expires, device, m) for m in named)])


def _parsed(value: str | None) -> tuple[int, str, list[str]] | None:
    """The expiry, device id and MACs of a well-formed cookie value; None for anything else."""
    if not value or len(value) > _MAX_LENGTH or not value.isascii():
        return None
    parts = value.split(".")
    if not 4 <= len(parts) <= 3 + MAX_MEMBERS or parts[0] != _VERSION or not all(parts):
        return None
    expiry = parts[1]
    if not (expiry.isdigit() and len(expiry) <= _MAX_EXPIRY_DIGITS):  # ASCII digits only: int() takes them all
        return None
    return int(expiry), parts[2], parts[3:]


def device_of(secret_keys: Sequence[str], value: str | None, members: Sequence[Member],
              now: dt.datetime) -> str | None:
    """The device id of a cookie valid at `now` under one of `secret_keys` for every one of `members`
    (none given: None), else None."""
    parsed = _parsed(value)
    if parsed is None or not members:
        return None
    expires, device, macs = parsed
    if expires <= now.timestamp():
        return None
    if all(_names(secret_keys, expires, device, macs, member) for member in members):
        return device
    return None


def _names(secret_keys: Sequence[str], expires: int, device: str, macs: Sequence[str], member: Member) -> bool:
    """Whether one of `macs` is `member`'s under one of `secret_keys`."""
    return any(hmac.compare_digest(_mac(key, expires, device, member), mac) for key in secret_keys for mac in macs)
