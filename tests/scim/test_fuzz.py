"""Generated bad input against every SCIM write and query: never a 500, always a SCIM error, and a
refused request changes nothing.

Hypothesis builds filters from the filter grammar (and mangles them), PATCH operations from the
forms IdPs send (and ones nobody should), and resource bodies of any JSON shape, NaN and
Infinity included (Python's JSON reader accepts them; the databases do not store them). Each
request must answer below 500; a 4xx must be a SCIM error in the protocol's format whose `status`
is the HTTP status; and a refused write must leave the audit log, and so the data, as it was.

The examples are derived from a fixed seed (`derandomize`), so CI runs the same cases every
time; `SCIM_FUZZ_EXAMPLES=1500` runs a longer search locally (about 4 minutes), and with
`SCIM_FUZZ_DETAIL=1 ... --hypothesis-show-statistics` it tallies what the refusals said, to see
how deep the generated requests get. The first long runs found two 500s, now fixed with tests of
their own: a PATCH remove of one value from an unmodelled list, and NaN/Infinity in a body.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from audit import Actor
from audit.models import AuditEvent
from identity.db import Database
from tests.scim.client import ENTERPRISE, GROUP, USER, Scim, scim_for

EXAMPLES = int(os.environ.get("SCIM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

ATTRIBUTES = [
    "userName", "USERNAME", "id", "externalId", "displayName", "nickName", "title", "active", "name",
    "name.givenName", "name.familyname", "emails", "emails.value", "emails.type", "emails.primary",
    "phoneNumbers.value", "addresses.locality", "groups", "groups.value", "members", "members.value",
    "meta.lastModified", "meta.created", "meta.resourceType", "x-unknown", "nosuch.sub",
    f"{ENTERPRISE}:manager", f"{ENTERPRISE}:manager.value", f"{ENTERPRISE}:department", f"{USER}:userName",
    "urn:bogus:schema:thing", "emails[type eq \"work\"].value", "emails[value co \"@\"]",
]
OPERATORS = ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "EQ", "Co", "xx", "pr", ""]
LITERALS = st.one_of(
    st.text(max_size=12).map(json.dumps), st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr), st.sampled_from(
        ["true", "false", "null", "\"2026-01-01T00:00:00Z\"", "\"2026-13-45T99:00:00Z\"", "\"\"", "work",
         "\"unterminated", "\"a\\\"b\"", "\"\\u00e9\"", "1e999", "-0", "[]", "{}"]))
COMPARISONS = st.builds(lambda a, o, v: f"{a} {o} {v}" if o != "pr" else f"{a} pr",
                        st.sampled_from(ATTRIBUTES), st.sampled_from(OPERATORS), LITERALS)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda a, b: f"{a} and {b}", inner, inner),
        st.builds(lambda a, b: f"{a} OR {b}", inner, inner),
        inner.map(lambda a: f"not ({a})"),
        inner.map(lambda a: f"({a})"),
        st.builds(lambda attr, a: f"{attr.split('[')[0]}[{a}]", st.sampled_from(ATTRIBUTES), inner),
    )


GRAMMATICAL = st.recursive(COMPARISONS, _combine, max_leaves=5)


def _mangle(text: str, cut: int, junk: str) -> str:
    at = cut % (len(text) + 1)
    return text[:at] + junk + text[at + len(junk) % 3:]


FILTERS = st.one_of(
    GRAMMATICAL,
    st.builds(_mangle, GRAMMATICAL, st.integers(0, 200), st.sampled_from(["(", ")", "[", "]", "\"", " and", "\\",
                                                                          "\x00", "not", "'", " ", "."])),
    st.text(max_size=40),
)

JSON_KEYS = st.one_of(st.sampled_from(
    ["value", "type", "primary", "display", "givenName", "familyName", "formatted", "$ref", "userName", "active",
     "emails", "name", "members", "manager", "schemas", "id", "meta", "op", "path", "Value"]), st.text(max_size=6))
JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=20),
                        st.sampled_from(["True", "False", "", "work", "2026-01-01T00:00:00Z"]))
JSON = st.recursive(JSON_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(JSON_KEYS, inner, max_size=3)), max_leaves=8)

# Plausible values first (what an IdP might send, in every shape it might send it), junk second:
# requests that only ever fail the first check prove little.
TEXT = st.text(max_size=20)
FLAGS = st.one_of(st.booleans(), st.sampled_from(["True", "False", "true", "yes", 1, 0]))
SOMEONE = st.sampled_from(["$USER", "$USER", "no-such-user", "", "$GROUP"])  # $USER: the target user's id
EMAILS = st.lists(st.fixed_dictionaries({"value": st.one_of(TEXT, st.just("x@fuzz.test"))}, optional={
    "type": st.sampled_from(["work", "home", "other", "", "WORK"]), "primary": FLAGS, "display": TEXT}), max_size=3)
NAME = st.fixed_dictionaries({}, optional={"givenName": TEXT, "familyName": TEXT, "formatted": TEXT,
                                           "middleName": st.one_of(TEXT, st.none())})
MEMBERS = st.lists(st.fixed_dictionaries({"value": SOMEONE}, optional={"display": TEXT, "$ref": TEXT}), max_size=3)
MANAGER = st.one_of(SOMEONE, st.fixed_dictionaries({"value": SOMEONE}, optional={"displayName": TEXT}), st.none())
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "userName": TEXT, "displayName": TEXT, "nickName": TEXT, "title": TEXT, "externalId": TEXT, "active": FLAGS,
    "name": NAME, "name.givenName": TEXT, "name.familyName": TEXT, "emails": EMAILS,
    'emails[type eq "work"].value': TEXT, 'emails[type eq "work"]': EMAILS, "phoneNumbers": EMAILS,
    "members": MEMBERS, 'members[value eq "$USER"]': st.none(), f"{ENTERPRISE}:manager": MANAGER,
    f"{ENTERPRISE}:department": TEXT, f"{ENTERPRISE}:employeeNumber": st.one_of(TEXT, st.integers()),
    ENTERPRISE: st.fixed_dictionaries({}, optional={"manager": MANAGER, "department": TEXT}),
}
OPS = st.sampled_from(["add", "replace", "remove", "Add", "Replace", "Remove"])
ONE_OP = st.one_of(
    # with a path, and a value of the shape that path takes (or none, for a remove)
    st.sampled_from(sorted(PLAUSIBLE)).flatmap(lambda path: st.fixed_dictionaries(
        {"op": OPS, "path": st.just(path)}, optional={"value": st.one_of(PLAUSIBLE[path], JSON)})),
    # path-less, as Entra and Okta send replace: an object of attributes, dotted and URN keys included
    st.fixed_dictionaries({"op": OPS, "value": st.dictionaries(st.sampled_from(sorted(PLAUSIBLE)), JSON_LEAVES,
                                                               max_size=3)}),
    # anything at all
    st.fixed_dictionaries({"op": st.one_of(OPS, JSON_LEAVES)},
                          optional={"path": st.one_of(FILTERS, JSON_LEAVES), "value": JSON}),
)
OPERATIONS = st.lists(ONE_OP, min_size=1, max_size=4)


def _body(schemas: Any, fields: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return {**extra, **fields, **({} if schemas is ... else {"schemas": schemas})}


def _resource(schema: str, required: str, names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        _body, st.one_of(st.just([schema]), st.just([schema]), st.just([schema, ENTERPRISE]), st.just(...), JSON),
        st.fixed_dictionaries({required: st.one_of(TEXT, TEXT, JSON_LEAVES)},
                              optional={name: st.one_of(PLAUSIBLE[name], PLAUSIBLE[name], JSON) for name in names}),
        st.dictionaries(JSON_KEYS, JSON, max_size=2))


USER_BODIES = _resource(USER, "userName", ["displayName", "active", "name", "emails", "externalId", "title",
                                           ENTERPRISE])
GROUP_BODIES = _resource(GROUP, "displayName", ["members", "externalId"])


def _aimed(document: Any, ids: dict[str, str]) -> Any:
    """Put the target user's and group's ids where the strategies wrote $USER and $GROUP."""
    return json.loads(_raw(document).replace("$USER", ids["user"]).replace("$GROUP", ids["group"]))


@pytest.fixture
def scim(db: Database, client: FlaskClient, system: Actor) -> Scim:
    found = scim_for(db, client, system, "FuzzCo")
    client.application.config["SCIM_RATE_LIMIT"] = 10**9  # thousands of requests in a few seconds
    return found


@pytest.fixture
def ids(scim: Scim) -> dict[str, str]:
    """A user and a group (with the user in it) for the writes to aim at."""
    user = scim.create_user("target@fuzz.test", name={"givenName": "T", "familyName": "Arget"})["id"]
    return {"user": user, "group": scim.create_group("Targets", [user])["id"]}


def _events(scim: Scim, db: Database) -> int:
    with db.reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)
                              .where(AuditEvent.org_id == scim.org_id)) or 0


def _check(response: TestResponse) -> None:
    """Below 500; a 4xx is a SCIM error naming its own status."""
    assert response.status_code < 500, response.get_data(as_text=True)
    body = response.get_json(silent=True) or {}
    event(f"{response.request.method} {response.status_code} {body.get('scimType', '')}")
    if os.environ.get("SCIM_FUZZ_DETAIL"):  # what the refusals say, ids and quoted values folded
        detail = re.sub(r"'[^']*'|[0-9a-f-]{36}", "_", str(body.get("detail")))[:90]
        event(f"{response.request.method} {response.status_code} {detail}")
    if response.status_code >= 400:
        assert response.mimetype == "application/scim+json", response.headers
        body = response.get_json()
        assert body["schemas"] == [ERROR] and body["status"] == str(response.status_code), body
        assert isinstance(body.get("detail"), str) and body["detail"]


def _raw(document: Any) -> str:
    return json.dumps(document, allow_nan=True)  # NaN and Infinity as Python's reader accepts them


def _write(scim: Scim, db: Database, method: str, path: str, document: Any) -> TestResponse:
    before = _events(scim, db)
    response = scim.request(method, path, _raw(document))
    _check(response)
    if response.status_code >= 400:
        assert _events(scim, db) == before, f"refused {method} {path} still changed something"
    return response


@FUZZ
@given(text=FILTERS, sort_by=st.one_of(st.none(), st.sampled_from(ATTRIBUTES)),
       start=st.one_of(st.none(), st.integers(-5, 10**12).map(str), st.text(max_size=4)),
       count=st.one_of(st.none(), st.integers(-5, 10**12).map(str), st.text(max_size=4)))
def test_any_filter_and_paging_is_an_answer_or_invalid_filter(scim: Scim, ids: dict[str, str], text: str,
                                                             sort_by: str | None, start: str | None,
                                                             count: str | None) -> None:
    query = {"filter": text, "sortBy": sort_by, "startIndex": start, "count": count}
    for resource in ("/Users", "/Groups"):
        response = scim.client.get(f"/scim/v2{resource}", query_string={k: v for k, v in query.items() if v is not None},
                                   headers={"Authorization": f"Bearer {scim.token}"})
        _check(response)
        if response.status_code == 400 and response.get_json().get("scimType") not in ("invalidFilter", "invalidValue"):
            pytest.fail(f"a bad query is invalidFilter or invalidValue: {response.get_json()}")
        search = scim.post(f"{resource}/.search", {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                                                   "filter": text})
        _check(search)


@FUZZ
@given(operations=OPERATIONS, target=st.sampled_from(["user", "group"]))
def test_any_patch_is_applied_whole_or_refused_whole(scim: Scim, db: Database, ids: dict[str, str],
                                                      operations: list[dict[str, Any]], target: str) -> None:
    path = f"/Users/{ids['user']}" if target == "user" else f"/Groups/{ids['group']}"
    before = scim.get(path).get_json()
    response = _write(scim, db, "PATCH", path,
                      {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                       "Operations": _aimed(operations, ids)})
    if response.status_code >= 400:
        after = scim.get(path).get_json()
        assert after == before, "a refused PATCH changed the resource"


def _create_and_replace(scim: Scim, db: Database, resources: str, target_id: str, body: Any) -> None:
    """POST the body (deleting what it made), then PUT it over the target; a refusal changes nothing."""
    response = _write(scim, db, "POST", f"/{resources}", body)
    if response.status_code == 201:
        _check(scim.delete(f"/{resources}/{response.get_json()['id']}"))
    target = scim.get(f"/{resources}/{target_id}").get_json()
    replaced = _write(scim, db, "PUT", f"/{resources}/{target_id}", body)
    if replaced.status_code >= 400:
        assert scim.get(f"/{resources}/{target_id}").get_json() == target


@FUZZ
@given(body=USER_BODIES)
def test_any_user_body_creates_a_user_or_is_refused_whole(scim: Scim, db: Database, ids: dict[str, str],
                                                          body: dict[str, Any]) -> None:
    _create_and_replace(scim, db, "Users", ids["user"], _aimed(body, ids))


@FUZZ
@given(body=GROUP_BODIES)
def test_any_group_body_creates_a_group_or_is_refused_whole(scim: Scim, db: Database, ids: dict[str, str],
                                                            body: dict[str, Any]) -> None:
    _create_and_replace(scim, db, "Groups", ids["group"], _aimed(body, ids))
