"""Attributes named by their schema URN in a POST/PUT body (RFC 7644 section 3.10) go where their short names go."""

from __future__ import annotations

import pytest

from scim.errors import InvalidValue
from scim.resources import normalize, user_fields
from scim.schema import CORE_USER, ENTERPRISE_USER, USER


def test_a_core_attribute_under_its_urn_name_is_a_top_level_attribute() -> None:
    body = normalize({"userName": "a@x.test", f"{CORE_USER}:TITLE": "Boss", f"{CORE_USER.upper()}:password": "s"},
                     USER)
    assert body == {"userName": "a@x.test", "title": "Boss", "password": "s"}
    assert "password" not in user_fields({"userName": "a@x.test", f"{CORE_USER}:password": "s"})["attributes"]


def test_an_extension_attribute_under_its_urn_name_merges_into_the_extension_object() -> None:
    body = normalize({"userName": "a@x.test", f"{ENTERPRISE_USER}:department": "Ops",
                      ENTERPRISE_USER: {"costCenter": "7"}}, USER)
    assert body[ENTERPRISE_USER] == {"costCenter": "7", "department": "Ops"}
    assert normalize({f"{ENTERPRISE_USER}:manager": "42"}, USER) == {ENTERPRISE_USER: {"manager": {"value": "42"}}}


def test_both_forms_agreeing_is_one_value_and_disagreeing_is_invalid() -> None:
    assert normalize({"title": "Boss", f"{CORE_USER}:title": "Boss"}, USER) == {"title": "Boss"}
    with pytest.raises(InvalidValue):
        normalize({f"{CORE_USER}:title": "Boss", "title": "Clerk"}, USER)
    with pytest.raises(InvalidValue):
        normalize({ENTERPRISE_USER: {"department": "Ops"}, f"{ENTERPRISE_USER}:Department": "Sales"}, USER)


def test_an_unknown_schema_urn_stays_an_unknown_attribute() -> None:
    assert normalize({"urn:example:custom:2.0:User:floor": 3}, USER) == {"urn:example:custom:2.0:User:floor": 3}
