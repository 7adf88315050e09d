"""The device cookie's format (saml.device_cookies): keyed to the member (org and user), naming no
address or id, valid until it expires, under SECRET_KEY or a previous one (SECRET_KEY_PREVIOUS)."""

from __future__ import annotations

import datetime as dt

from saml import device_cookies
from saml.device_cookies import Member

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
KEY, OLD = "k" * 32, "o" * 32
OWNER, SAME_ADDRESS_ELSEWHERE = Member("org-acme", "user-owner"), Member("org-rival", "user-owner")


def test_a_cookie_is_valid_for_its_member_only_until_it_expires_and_under_a_previous_key() -> None:
    value = device_cookies.issue(KEY, [OWNER], NOW)
    assert device_cookies.device_of((KEY,), value, [OWNER], NOW) is not None
    assert device_cookies.device_of((KEY,), value, [SAME_ADDRESS_ELSEWHERE], NOW) is None  # another org's member
    assert device_cookies.device_of((KEY,), value, [Member("org-acme", "user-other")], NOW) is None
    assert device_cookies.device_of((KEY,), value, [], NOW) is None  # nobody to mail: no device
    expired = NOW + device_cookies.LIFETIME + dt.timedelta(seconds=1)
    assert device_cookies.device_of((KEY,), value, [OWNER], expired) is None
    assert device_cookies.device_of(("new" * 11, OLD), value, [OWNER], NOW) is None  # another key
    rotated = device_cookies.issue(OLD, [OWNER], NOW)
    assert device_cookies.device_of((KEY, OLD), rotated, [OWNER], NOW) is not None  # SECRET_KEY_PREVIOUS
    assert "acme" not in value and "owner" not in value


def test_a_cookie_counts_only_when_it_names_every_member_asked_for() -> None:
    value = device_cookies.issue(KEY, [OWNER], NOW)
    assert device_cookies.device_of((KEY,), value, [OWNER, SAME_ADDRESS_ELSEWHERE], NOW) is None
    both = device_cookies.issue(KEY, [OWNER, SAME_ADDRESS_ELSEWHERE], NOW)
    assert device_cookies.device_of((KEY,), both, [SAME_ADDRESS_ELSEWHERE, OWNER], NOW) is not None
    other_device = device_cookies.issue(KEY, [OWNER], NOW)
    assert device_cookies.device_of((KEY,), other_device, [OWNER], NOW) != device_cookies.device_of(
        (KEY,), value, [OWNER], NOW)


def test_a_cookie_names_at_most_max_members() -> None:
    many = [Member("org", f"user-{n}") for n in range(device_cookies.MAX_MEMBERS + 1)]
    value = device_cookies.issue(KEY, many, NOW)
    assert len(value.split(".")) == 3 + device_cookies.MAX_MEMBERS
    assert device_cookies.device_of((KEY,), value, many[:1], NOW) is not None
    assert device_cookies.device_of((KEY,), value, many[-1:], NOW) is None
    padded = value + "." + value.split(".")[-1]  # one MAC more than a cookie may hold: malformed
    assert device_cookies.device_of((KEY,), padded, many[:1], NOW) is None


def test_a_malformed_cookie_is_no_cookie() -> None:
    value = device_cookies.issue(KEY, [OWNER], NOW)
    version, expires, device, mac = value.split(".")
    for garbage in (None, "", "x", "v2.1.2.3", value + ".", value.replace(".", "..", 1),
                    f"{version}.\u00b2\u00b2.{device}.{mac}", f"{version}.\u0661\u0662.{device}.{mac}",
                    f"{version}.{'9' * 40}.{device}.{mac}", f"{version}.{expires}.{device}.{mac}\u00e9",
                    value + "x" * 600, f"v1.{expires}.{device}.{mac}"):
        assert device_cookies.device_of((KEY,), garbage, [OWNER], NOW) is None
