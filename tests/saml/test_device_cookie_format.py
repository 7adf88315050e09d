"""The device cookie's format (saml.device_cookies): keyed to the address, never naming it, valid
until it expires, under SECRET_KEY or a previous one (SECRET_KEY_PREVIOUS)."""

from __future__ import annotations

import datetime as dt

from saml import device_cookies

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
KEY, OLD = "k" * 32, "o" * 32


def test_a_cookie_is_valid_for_its_address_only_until_it_expires_and_under_a_previous_key() -> None:
    value = device_cookies.issue(KEY, ["Owner@Acme.test"], NOW)
    assert device_cookies.device_of((KEY,), value, "owner@acme.test", NOW) is not None  # the address's key
    assert device_cookies.device_of((KEY,), value, "other@acme.test", NOW) is None
    expired = NOW + device_cookies.LIFETIME + dt.timedelta(seconds=1)
    assert device_cookies.device_of((KEY,), value, "owner@acme.test", expired) is None
    assert device_cookies.device_of(("new" * 11, OLD), value, "owner@acme.test", NOW) is None  # another key
    rotated = device_cookies.issue(OLD, ["owner@acme.test"], NOW)
    assert device_cookies.device_of((KEY, OLD), rotated, "owner@acme.test", NOW) is not None  # SECRET_KEY_PREVIOUS
    version, expires, device, mac = value.split(".")
    for garbage in (None, "", "x", "v1.1.2.3", value + ".", value.replace(".", "..", 1),
                    f"{version}.\u00b2\u00b2.{device}.{mac}", f"{version}.\u0661\u0662.{device}.{mac}",
                    f"{version}.{'9' * 40}.{device}.{mac}"):
        assert device_cookies.device_of((KEY,), garbage, "owner@acme.test", NOW) is None


def test_a_cookie_for_two_addresses_of_one_member_serves_both_and_a_device_its_own_bucket() -> None:
    value = device_cookies.issue(KEY, ["jdoe@acme.test", "john.doe@acme.test"], NOW)
    one = device_cookies.device_of((KEY,), value, "jdoe@acme.test", NOW)
    two = device_cookies.device_of((KEY,), value, "JOHN.DOE@acme.test", NOW)
    assert one is not None and two is not None
    other_device = device_cookies.issue(KEY, ["jdoe@acme.test"], NOW)
    assert device_cookies.device_of((KEY,), other_device, "jdoe@acme.test", NOW) != one
