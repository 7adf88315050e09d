"""The IdPs' lookups read by statements made once (scim.idp_lookups) answer what the general path
(scim.listing.list_users, list_groups) answers: the same SQL, the same rows, the same totals, and nothing the
general path refuses, for any value and any spelling of the forms, on both databases."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from audit import Actor
from identity.db import Database
from scim import idp_lookups, listing
from scim.errors import InvalidFilter
from scim.listing import Query
from tests.scim.client import Scim, scim_for
from tests.scim.conftest import Directory

FORMS = ["userName", "externalId", "id", "emails", "emails.value", 'emails[type eq "work"].value',
         'emails[type eq "home"].value', 'emails[type eq "other"].value']
GROUP_FORMS = ["displayName", "externalId", "id"]
# kind -> (its lookups, its forms, the general path's list and page statement)
KINDS: dict[str, tuple[idp_lookups.Kind, list[str], Any, Any]] = {
    "users": (idp_lookups.USERS, FORMS, listing.list_users, listing.users_page),
    "groups": (idp_lookups.GROUPS, GROUP_FORMS, listing.list_groups, listing.groups_page),
}
# Values the directory holds (tests/scim/conftest.py), and what may be sent in their place.
KNOWN = ["BJensen@Example.com", "bjensen@example.com", "babs@Home.org", "ext-BJ", "ext-js", "jsmith", "JSMITH",
         'quote"man', "john@corp.com", "j.smith@x.com", "legacy@old.org", "Legacy@Old.org", "q@x.com", "owner@acme.test"]
KNOWN_GROUPS = ["Engineering", "ENGINEERING", "engineering", "eng-1", "ENG-1", "Empty", "eMPTY"]


def _cased(word: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(word, upper, strict=True)))


_ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_VALUE = st.one_of(st.sampled_from(KNOWN + KNOWN_GROUPS), _ANY)
# What JSON escapes may say that no database text holds: NUL, a surrogate not in a pair.
_ESCAPED = st.sampled_from(['"\\u0000"', '"a\\ud800"', '"\\udfff"', '"\\ud83d\\ude00"', '"\\ude00\\ud83d"'])
# Mostly what the lexer ignores; now and then what it does not.
_SPACE = st.sampled_from(["", " ", "", " ", "  ", "\t", "", " ", "\u00a0", "\n"])


def _quoted(known: list[str]) -> st.SearchStrategy[str]:
    values = st.one_of(st.sampled_from(known), st.sampled_from(known), _ANY)  # a row found, more often than not
    return st.one_of(values.map(json.dumps), values.map(lambda v: json.dumps(v, ensure_ascii=False)), _ESCAPED,
                     st.sampled_from(['"bad \\x escape"', '"a\\"', '"unterminated']))


def _texts(forms: list[str], known: list[str]) -> st.SearchStrategy[str]:
    return st.builds(lambda s1, form, s2, op, s3, value, s4: f"{s1}{form}{s2 or ' '}{op}{s3 or ' '}{value}{s4}",
                     _SPACE, st.sampled_from(forms).flatmap(_cased), _SPACE, _cased("eq"), _SPACE, _quoted(known),
                     _SPACE)


def _query(text: str, start: int = 1, count: int = 100) -> Query:
    return Query(filter=text, start=start, count=count, sort_by=None, descending=False, attributes=[], excluded=[])


def _general(session: Any, org_id: str, query: Query, kind: str = "users") -> \
        tuple[int, list[tuple[Any, ...]]] | InvalidFilter:
    try:
        total, rows = KINDS[kind][2](session, org_id, query)
    except InvalidFilter as refused:
        return refused
    return total, [tuple(row) for row in rows]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), start=st.sampled_from([1, 1, 2, 2**31 + 5, 10**18 - 1]), count=st.sampled_from([100, 1, 2]))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_lookup_answers_as_the_general_path(directory: Directory, kind: str, data: st.DataObject, start: int,
                                              count: int) -> None:
    text = data.draw(_texts(KINDS[kind][1], KNOWN if kind == "users" else KNOWN_GROUPS))
    query = _query(text, start, count)
    with directory.db.reading() as session:
        fast = idp_lookups.find(KINDS[kind][0], session, directory.org_id, query)
        general = _general(session, directory.org_id, query, kind)
    if fast is None:
        return  # answered by the general path, whatever it says
    assert not isinstance(general, InvalidFilter), (text, general)
    assert (fast[0], [tuple(row) for row in fast[1]]) == general, text


@pytest.mark.parametrize("text", ['userName eq "BJensen@example.COM"', 'externalId eq "ext-js"',
                                  'emails[type eq "work"].value eq "JOHN@corp.com"', 'EMAILS eq "q@x.com"',
                                  'userName eq "nobody"'])
def test_the_idps_lookups_take_the_fast_path(directory: Directory, text: str) -> None:
    with directory.db.reading() as session:
        fast = idp_lookups.find(idp_lookups.USERS, session, directory.org_id, _query(text))
        general = _general(session, directory.org_id, _query(text))
    assert fast is not None and (fast[0], [tuple(row) for row in fast[1]]) == general
    assert fast[0] == (0 if "nobody" in text else 1)


def test_the_fast_path_is_found_by_id(directory: Directory) -> None:
    babs = directory.users["babs"]
    with directory.db.reading() as session:
        fast = idp_lookups.find(idp_lookups.USERS, session, directory.org_id, _query(f'id eq "{babs}"'))
    assert fast is not None and [row.id for row in fast[1]] == [babs]


@pytest.mark.parametrize("text", ['displayName eq "ENGINEERING"', 'externalId eq "eng-1"', 'DISPLAYNAME eq "nobody"'])
def test_the_idps_group_lookups_take_the_fast_path(directory: Directory, text: str) -> None:
    with directory.db.reading() as session:
        fast = idp_lookups.find(idp_lookups.GROUPS, session, directory.org_id, _query(text))
        general = _general(session, directory.org_id, _query(text), "groups")
    assert fast is not None and (fast[0], [tuple(row) for row in fast[1]]) == general
    assert [row.id for row in fast[1]] == ([] if "nobody" in text else [directory.groups["Engineering"]])


@pytest.mark.parametrize("text", ['userName eq "a" or userName eq "b"', 'userName sw "a"', 'name.givenName eq "x"',
                                  'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"',
                                  'emails[type eq "mobile"].value eq "x"', 'userName eq "\\x"', 'userName eq "a\\u0000"',
                                  'uſerName eq "x"', 'userName\u00a0eq "x"', 'userName eq ' + json.dumps("x" * 5000)])
def test_other_texts_go_the_general_way(text: str) -> None:
    assert idp_lookups._form(idp_lookups.USERS, text) is None


@pytest.mark.parametrize("text", ['displayName sw "a"', 'members.value eq "x"', 'displayName eq "a" or id eq "b"',
                                  'userName eq "x"', 'emails eq "x"', 'displayName eq "\\ud800"'])
def test_other_group_texts_go_the_general_way(text: str) -> None:
    assert idp_lookups._form(idp_lookups.GROUPS, text) is None


@settings(max_examples=200)
@given(data=st.data(), value=_VALUE)
@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("dialect", [postgresql.dialect(), sqlite.dialect()], ids=["postgresql", "sqlite"])
def test_the_statement_is_the_general_paths_own(dialect: Any, kind: str, data: st.DataObject, value: str) -> None:
    assume("\x00" not in value)  # refused by the lexer: the general path answers (test above)
    lookups, forms, _, page = KINDS[kind]
    text = f"{data.draw(st.sampled_from(forms))} eq {json.dumps(value)}"
    found = idp_lookups._form(lookups, text)
    assert found is not None
    compared = lookups.compared(found[0])
    bound = idp_lookups._read(lookups, found[0]).statement.params(
        org_id="org-1", value=value if compared is None else compared(value), offset=0, count=100)
    general = page("org-1", _query(text))

    def sql(statement: Any) -> str:
        return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))

    assert sql(bound) == sql(general)
    if kind == "users":  # scim.lookup_front's statement: the same, and each user's groups as a last column
        with_groups = idp_lookups._read(lookups, found[0], with_groups=True).statement
        assert with_groups.selected_columns.keys()[-1] == "groups_of"
        assert sql(with_groups.with_only_columns(*list(with_groups.selected_columns)[:-1]).params(
            org_id="org-1", value=value if compared is None else compared(value), offset=0, count=100)) == sql(general)


def test_a_full_page_is_counted_by_the_general_path(directory: Directory) -> None:
    with directory.db.reading() as session:  # one match, one per page: the page alone cannot tell the total
        assert idp_lookups.find(idp_lookups.USERS, session, directory.org_id,
                                _query('userName eq "jsmith"', count=1)) is None
        assert listing.list_users(session, directory.org_id, _query('userName eq "jsmith"', count=1))[0] == 1


def test_one_users_groups_read_alone_are_those_read_with_others(directory: Directory) -> None:
    babs, john, legacy = directory.users["babs"], directory.users["john"], directory.users["legacy"]
    with directory.db.reading() as session:
        together = listing.groups_of(session, [babs, john, legacy])
        assert {user: listing.groups_of(session, [user])[user] for user in (babs, john, legacy)} == together
    assert together[babs] == [(directory.groups["Engineering"], "Engineering")] and together[legacy] == []


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    return scim_for(db, client, system, "Acme", included_seats=10)


def test_a_lookup_over_http_is_rendered_and_projected(scim: Scim) -> None:
    made = scim.create_user("Ada@acme.test", externalId="00u-ada", emails=[{"value": "ada@work.test", "type": "work"}])
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops",
                                  "members": [{"value": made["id"]}]}).json
    for text in ('userName eq "ADA@acme.test"', 'externalId eq "00u-ada"', 'emails[type eq "work"].value eq "ada@WORK.test"'):
        found = scim.get("/Users?filter=" + quote(text))
        assert found.status_code == 200 and found.json["totalResults"] == 1, text
        user = found.json["Resources"][0]
        assert user["id"] == made["id"] and user["userName"] == "Ada@acme.test"
        assert user["groups"] == [{"value": group["id"], "display": "Ops", "$ref": user["groups"][0]["$ref"],
                                   "type": "direct"}] or [g["value"] for g in user["groups"]] == [group["id"]]
    projected = scim.get("/Users?attributes=userName&filter=" + quote('userName eq "ada@acme.test"')).json
    assert set(projected["Resources"][0]) == {"id", "userName", "schemas"}
    assert scim.get("/Users?filter=" + quote('userName eq "nobody@acme.test"')).json["totalResults"] == 0
    for bad in ('userName eq "\\x"', 'userName eq "\\ud800"', 'externalId eq "a\\u0000"'):
        refused = scim.get("/Users?filter=" + quote(bad))
        assert refused.status_code == 400 and refused.json["scimType"] == "invalidFilter", bad
    far = scim.get("/Users?startIndex=2147483649&filter=" + quote('userName eq "ada@acme.test"'))  # past INTEGER
    assert far.status_code == 200 and (far.json["totalResults"], far.json["Resources"]) == (1, [])


def test_a_group_lookup_over_http_is_rendered_and_projected(scim: Scim) -> None:
    made = scim.create_user("ada@acme.test")
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops",
                                  "externalId": "okta-ops", "members": [{"value": made["id"]}]}).json
    for text in ('displayName eq "OPS"', 'externalId eq "okta-ops"', f'id eq "{group["id"]}"'):
        found = scim.get("/Groups?filter=" + quote(text))
        assert found.status_code == 200 and found.json["totalResults"] == 1, text
        assert found.json["Resources"][0]["id"] == group["id"]
        assert [m["value"] for m in found.json["Resources"][0]["members"]] == [made["id"]]
    entra = scim.get("/Groups?excludedAttributes=members&filter=" + quote('displayName eq "Ops"')).json
    assert entra["totalResults"] == 1 and "members" not in entra["Resources"][0]
    assert entra["Resources"][0]["displayName"] == "Ops"
    assert scim.get("/Groups?filter=" + quote('displayName eq "nobody"')).json["totalResults"] == 0

