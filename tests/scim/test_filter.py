"""SCIM filters translated into SQL: each case runs against the same users on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from identity.models import IdpGroup, User
from scim.errors import InvalidFilter
from scim.filter import (
    GROUPS,
    USERS,
    AttrPath,
    Compare,
    Logical,
    Not,
    ValuePath,
    filter_groups,
    filter_users,
    parse_filter,
    sort_key,
)
from tests.scim.conftest import Directory

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ALL = {"owner", "babs", "john", "legacy", "quote"}


def matching_users(directory: Directory, text: str) -> set[str]:
    names = {user_id: short for short, user_id in directory.users.items()}
    with directory.db.reading() as session:
        ids = session.scalars(select(User.id).where(User.org_id == directory.org_id, filter_users(text)))
        return {names[i] for i in ids}


def matching_groups(directory: Directory, text: str) -> set[str]:
    names = {group_id: name for name, group_id in directory.groups.items()}
    with directory.db.reading() as session:
        ids = session.scalars(select(IdpGroup.id).where(IdpGroup.org_id == directory.org_id, filter_groups(text)))
        return {names[i] for i in ids}


USER_CASES = [
    # columns, case-insensitive where caseExact is false (userName, displayName, name.*)
    ('userName eq "bjensen@example.com"', {"babs"}),
    ('USERNAME Eq "BJENSEN@EXAMPLE.COM"', {"babs"}),
    (f'{CORE}:userName eq "jsmith"', {"john"}),
    ('userName ne "jsmith"', ALL - {"john"}),
    ('userName sw "BJ"', {"babs"}),
    ('userName ew ".COM"', {"babs"}),
    ('userName co "@"', {"owner", "babs"}),
    ('userName gt "legacy"', {"owner", "quote"}),
    ('userName le "jsmith"', {"babs", "john"}),
    ('externalId eq "ext-BJ"', {"babs"}),
    ('externalId eq "EXT-BJ"', set()),  # caseExact
    ('externalId pr', {"babs", "john"}),
    ('displayName co "smith"', {"john"}),
    ('name.givenName eq "barbara"', {"babs"}),
    ('name.familyName sw "sm"', {"john"}),
    ('name.middleName eq "ann"', {"babs"}),
    ('name pr', {"babs", "john"}),
    ('name[givenName eq "John" or middleName eq "Ann"]', {"babs", "john"}),
    ('active eq false', {"john"}),
    ('active eq true', ALL - {"john"}),
    ('active ne true', {"john"}),
    ('active eq "False"', {"john"}),
    # escaped quotes, and values with LIKE wildcards that must stay literal
    ('userName eq "quote\\"man"', {"quote"}),
    ('displayName co "\\"hi\\""', {"quote"}),
    ('title co "%_"', {"john"}),
    ('title co "0%"', {"john"}),
    ('title co "_d"', {"john"}),
    ('title co "\\\\"', {"john"}),
    ('title sw "%"', set()),
    ('title co "%"', {"john"}),
    ('title ew "%"', set()),
    ('title pr', {"babs", "john"}),
    ('title eq ""', {"legacy"}),
    ('not (title pr)', {"owner", "legacy", "quote"}),
    ('title eq null', {"owner", "legacy", "quote"}),
    ('title ne null', {"babs", "john"}),
    ('nickName eq "babs"', {"babs"}),
    ('not (nickName eq "babs")', ALL - {"babs"}),
    ('nickName ne "babs"', ALL - {"babs"}),
    # emails: what GET shows, the array sent or else the `email` column as a primary work address
    # (owner and legacy have no array), matched through the user_emails index table
    ('emails.value eq "babs@home.org"', {"babs"}),
    ('emails eq "JOHN@corp.com"', {"john"}),
    ('emails.value eq "legacy@old.org"', {"legacy"}),
    ('emails.value eq "owner@acme.test"', {"owner"}),
    ('emails co "@x.com"', {"john", "quote"}),
    ('emails.type eq "home"', {"babs", "john", "quote"}),
    ('emails[type eq "work" and value co "@example.com"]', {"babs"}),
    ('emails[type eq "home" and value co "@corp.com"]', set()),
    ('emails[type eq "work"].value ew "corp.com"', {"john"}),
    ('emails[type eq "work"] and emails[type eq "home"]', {"babs", "john"}),
    ('emails[primary eq true]', {"owner", "babs", "john", "legacy"}),
    ('emails[not (primary eq true)]', {"babs", "john", "quote"}),
    ('emails[type eq "WORK"]', {"babs", "john", "owner", "legacy"}),
    ('emails pr', ALL),
    ('not (emails[type eq "work"])', {"quote"}),
    ('phoneNumbers[type eq "work" and value sw "555"]', {"babs"}),
    ('phoneNumbers pr', {"babs"}),
    # enterprise extension, by URN and by unambiguous bare name
    (f'{ENT}:employeeNumber eq "701984"', {"babs"}),
    (f'{ENT.upper()}:EMPLOYEENUMBER eq "701984"', {"babs"}),
    (f'{ENT}:employeeNumber eq 10', {"john"}),
    (f'{ENT}:employeeNumber eq 9', {"quote"}),  # stored as a JSON number, compared as text
    (f'{ENT}:employeeNumber gt "5"', {"babs", "quote"}),
    ('department eq "r&d"', {"john"}),
    (f'{ENT}:department pr', {"babs", "john"}),
    (f'{ENT}:manager.value eq "mgr-1"', {"quote"}),
    (f'{ENT}:manager eq "MGR-1"', {"quote"}),
    (f'{ENT}:manager pr', {"quote"}),
    # meta as datetimes
    ('meta.created gt "2000-01-01T00:00:00Z"', ALL),
    ('meta.lastModified lt "2000-01-01T00:00:00+02:00"', set()),
    ('meta.lastModified ge "2000-01-01T00:00:00"', ALL),
    ('meta.resourceType eq "User"', ALL),
    ('id eq "no-such-id"', set()),
    # groups, from the membership table
    ('groups pr', {"babs", "john"}),
    ('groups[display eq "engineering"]', {"babs", "john"}),
    # precedence: `and` binds tighter than `or`; `not` tighter than both
    ('userName eq "jsmith" or userName eq "legacy" and active eq false', {"john"}),
    ('(userName eq "jsmith" or userName eq "legacy") and active eq true', {"legacy"}),
    ('userName eq "legacy" or userName eq "jsmith" and active eq true', {"legacy"}),
    ('not (active eq true) or userName eq "legacy"', {"john", "legacy"}),
    ('not (userName eq "jsmith" or userName eq "legacy")', {"owner", "babs", "quote"}),
]


@pytest.mark.parametrize(("text", "expected"), USER_CASES, ids=[c[0] for c in USER_CASES])
def test_user_filters(directory: Directory, text: str, expected: set[str]) -> None:
    assert matching_users(directory, text) == expected


def test_user_filter_by_id_and_group_membership(directory: Directory) -> None:
    babs, group = directory.users["babs"], directory.groups["Engineering"]
    assert matching_users(directory, f'id eq "{babs}"') == {"babs"}
    assert matching_users(directory, f'groups.value eq "{group.upper()}"') == {"babs", "john"}
    assert matching_users(directory, f'groups[value eq "{directory.groups["Empty"]}"]') == set()


def test_many_comparisons(directory: Directory) -> None:
    """The transpiler's 26-comparison IndexError does not apply: 40 comparisons in one filter."""
    names = " or ".join(f'userName eq "nobody{i}"' for i in range(39))
    assert matching_users(directory, f'{names} or userName eq "legacy"') == {"legacy"}


GROUP_CASES = [
    ('displayName eq "ENGINEERING"', {"Engineering"}),
    ('displayName sw "e"', {"Engineering", "Empty"}),
    ('externalId eq "eng-1"', {"Engineering"}),
    ('externalId pr', {"Engineering"}),
    ('members pr', {"Engineering"}),
    ('not (members pr)', {"Empty"}),
    ('members[type eq "User"]', {"Engineering"}),
    ('members[display co "jensen"]', {"Engineering"}),
    ('meta.lastModified eq "2026-01-01T00:00:00Z"', {"Engineering", "Empty"}),
    ('meta.created gt "2026-01-01T00:00:00Z"', set()),
]


@pytest.mark.parametrize(("text", "expected"), GROUP_CASES, ids=[c[0] for c in GROUP_CASES])
def test_group_filters(directory: Directory, text: str, expected: set[str]) -> None:
    assert matching_groups(directory, text) == expected


def test_group_filter_by_member(directory: Directory) -> None:
    babs = directory.users["babs"]
    assert matching_groups(directory, f'members.value eq "{babs}"') == {"Engineering"}
    assert matching_groups(directory, f'members[value eq "{babs.upper()}"]') == {"Engineering"}
    assert matching_groups(directory, f'members eq "{directory.users["legacy"]}"') == set()


@pytest.mark.parametrize(("sort_by", "expected"), [
    ("userName", ["babs", "john", "legacy", "owner", "quote"]),
    ("name.familyName", ["babs", "john"]),
    ("emails", ["babs", "john", "legacy", "owner"]),
    (f"{ENT}:employeeNumber", ["john", "babs", "quote"]),  # as text: "10" < "701984" < "9"
    ("meta.created", None),
])
def test_sort_key(directory: Directory, sort_by: str, expected: list[str] | None) -> None:
    names = {user_id: short for short, user_id in directory.users.items()}
    key = sort_key(USERS, sort_by)
    with directory.db.reading() as session:
        rows = session.execute(select(User.id, key).where(User.org_id == directory.org_id, key.is_not(None))
                               .order_by(key, User.id)).all()
    if expected is not None:
        assert [names[r[0]] for r in rows] == expected
    else:
        assert len(rows) == len(ALL)


INVALID = [
    "", "   ", "nosuch eq \"x\"", "userName", "userName eq", "userName eq \"x", "userName eq \"x\" and",
    "(userName eq \"x\"", "userName eq \"x\")", "userName regex \"x\"", "userName eq x", "urn:nope:User:userName pr",
    "name.nosuch eq \"x\"", "userName.sub eq \"x\"", "emails[nosuch eq \"x\"]", "emails[type[value eq 1]]",
    "title[value eq \"x\"]", "emails[type eq \"work\"", "password eq \"secret\"", "active gt true",
    "active eq 1", "active co \"t\"", "meta.created co \"2020\"", "meta.created gt \"yesterday\"",
    "meta.version eq \"1\"", "userName eq true", "userName gt null", "name eq \"x\"",
    "emails[value eq \"a\"].type.x eq \"b\"", "userName eq \"\\q\"", "userName eq 007", "a eq 1 b eq 2",
    "userName eq \"x\" \x00", "userName eq \"a\\u0000b\"", "not", "not ()", "eq eq \"x\"", "members pr",
    "(" * 100 + "userName pr" + ")" * 100, "not " * 100 + "(userName pr)", "userName eq \"" + "x" * 5000 + "\"",
]


@pytest.mark.parametrize("text", INVALID)
def test_invalid_filters_raise_invalid_filter(text: str) -> None:
    with pytest.raises(InvalidFilter):
        filter_users(text)


@pytest.mark.parametrize("text", ["userName eq \"x\"", "members[$ref eq \"x\"]", "meta.location pr"])
def test_invalid_group_filters(text: str) -> None:
    with pytest.raises(InvalidFilter):
        filter_groups(text)


@pytest.mark.parametrize("sort_by", ["nosuch", "name", "emails[type eq \"work\"]", "groups", "password", ""])
def test_invalid_sort_by(sort_by: str) -> None:
    with pytest.raises(InvalidFilter):
        sort_key(USERS, sort_by)


def test_group_sort_key_is_case_insensitive_display_name() -> None:
    """By its key (identity.names.name_key), as the name is unique by: `Équipe` sorts as `équipe`."""
    assert str(sort_key(GROUPS, "displayname")) == "IdpGroup.display_name_key"


@pytest.mark.parametrize(("text", "fragment"), [
    ('userName eq "BJensen"', "users.user_name_key = "),  # the uq_users_org_user_name index applies
    ('externalId eq "x"', "users.external_id = "),
    ('emails.value eq "A@b"', "users.id IN (SELECT user_emails.user_id \nFROM user_emails \nWHERE user_emails.value = "),
    ('title co "%"', "instr("),
])
def test_columns_are_compared_as_indexed(text: str, fragment: str) -> None:
    from sqlalchemy.dialects import sqlite

    sql = str(select(User.id).where(filter_users(text)).compile(dialect=sqlite.dialect()))
    assert fragment in sql
    assert " LIKE " not in sql.upper()


def test_random_input_only_ever_raises_invalid_filter() -> None:
    """Token soup, truncations and odd characters: a filter either parses or raises InvalidFilter."""
    import random

    words = ['userName', 'emails', '[', ']', '(', ')', 'eq', 'pr', 'and', 'or', 'not', '"x"', '"\\"', '12', '-1.5',
             'true', 'null', '.value', 'type', f'{ENT}:', 'manager', '.', '"', '\\', '\x00', 'é', ' ', '1e999']
    rng = random.Random(7644)
    for _ in range(3000):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 9)))
        try:
            filter_users(text)
        except InvalidFilter:
            pass


@pytest.mark.parametrize(("text", "expected"), [
    ('nullable eq null', Compare(AttrPath(None, "nullable"), "eq", None)),
    ('truex pr', Compare(AttrPath(None, "truex"), "pr")),
    ('falsehood eq false', Compare(AttrPath(None, "falsehood"), "eq", False)),
    ('x eq 12345', Compare(AttrPath(None, "x"), "eq", 12345)),
    ('x gt -1.5e3', Compare(AttrPath(None, "x"), "gt", -1500.0)),
    ('x eq True', Compare(AttrPath(None, "x"), "eq", True)),
    ('x eq "a\\"b\\\\c\\u00e9"', Compare(AttrPath(None, "x"), "eq", 'a"b\\cé')),
    ('a pr or b pr and c pr', Logical("or", Compare(AttrPath(None, "a"), "pr"),
                                      Logical("and", Compare(AttrPath(None, "b"), "pr"), Compare(AttrPath(None, "c"), "pr")))),
    ('not (a pr) and b pr', Logical("and", Not(Compare(AttrPath(None, "a"), "pr")), Compare(AttrPath(None, "b"), "pr"))),
    ('emails[type eq "work"].value co "@x"', ValuePath(AttrPath(None, "emails"), Logical(
        "and", Compare(AttrPath(None, "type"), "eq", "work"), Compare(AttrPath(None, "value"), "co", "@x")))),
    (f'{ENT}:manager.value eq "m"', Compare(AttrPath(ENT, "manager", "value"), "eq", "m")),
])
def test_parse_filter(text: str, expected: object) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", ['nullable eq "x"', "truex pr", "null eq 1", "true pr"])
def test_literal_prefixes_are_names_or_errors_never_literals(text: str) -> None:
    with pytest.raises(InvalidFilter, match="unknown attribute|expected an attribute name"):
        filter_users(text)


def test_email_filters_follow_every_change_of_a_users_emails(client, db, system) -> None:
    """user_emails (the index behind email filters) follows create, PATCH, PUT and the email column."""
    from identity import user_profile
    from tests.scim.client import scim_for

    scim = scim_for(db, client, system, "Mails")

    def found(email: str) -> int:
        response = scim.get(f'/Users?filter=emails[type eq "work"].value eq "{email}"')
        assert response.status_code == 200
        return int(response.json["totalResults"])

    made = scim.post("/Users", {"userName": "m@mails.test",
                                "emails": [{"value": "One@Mails.test", "type": "work", "primary": True}]})
    user_id = made.json["id"]
    assert found("one@mails.test") == 1
    scim.patch(f"/Users/{user_id}", [{"op": "replace", "path": "emails[type eq \"work\"].value",
                                      "value": "two@mails.test"}])
    assert (found("one@mails.test"), found("TWO@mails.test")) == (0, 1)
    scim.put(f"/Users/{user_id}", {"userName": "m@mails.test",
                                   "emails": [{"value": "three@mails.test", "type": "work"}]})
    assert (found("two@mails.test"), found("three@mails.test")) == (0, 1)
    scim.put(f"/Users/{user_id}", {"userName": "m@mails.test"})  # no array: the email column shows
    with db.transaction() as session:
        user_profile.update_profile(session, system, scim.org_id, user_id, {"email": "four@mails.test"})
    assert (found("three@mails.test"), found("four@mails.test")) == (0, 1)
    assert scim.delete(f"/Users/{user_id}").status_code == 204
    assert found("four@mails.test") == 0
